"""Applying one host's planned changes: usually one round trip; a change with an
``exchange`` ends its round trip and the commands built from its output start the
next. A failure past the first round trip rolls the earlier ones back."""

from __future__ import annotations

import secrets
from typing import Any

from meshctl.core import applyscript
from meshctl.core.errors import MeshctlError
from meshctl.core.ops import Cmd, OperationError
from meshctl.core.results import HostResult, Reporter
from meshctl.core.transport import UnreachableError


class ApplyRunner:
    def __init__(self, session: Any, node: str, result: HostResult, reporter: Reporter, timeout: float):
        self.session = session
        self.node = node
        self.result = result
        self.reporter = reporter
        self.timeout = timeout
        self.run_id = secrets.token_hex(8)

    def run(self) -> None:
        result = self.result
        changes = result.changes
        total = len(changes)
        self.reporter.host_phase(self.node, f"applying {total} change(s)")
        result.applied = True
        pos = 0
        carry: tuple[int, list[Cmd]] | None = None
        ran = False  # a round trip ran: its rollback directory is on the host
        current = 0
        try:
            while pos < total or carry is not None:
                steps: list[tuple[int, list[Cmd]]] = [carry] if carry is not None else []
                carry = None
                exchange_at = None
                while pos < total:
                    current = pos
                    steps.append((pos, changes[pos].commands))
                    pos += 1
                    if changes[pos - 1].exchange is not None:
                        exchange_at = pos - 1
                        break
                per_step = self._run_steps(steps, total, final=exchange_at is None)
                ran = True
                if per_step is None:
                    return
                if exchange_at is not None:
                    current = exchange_at
                    change = changes[exchange_at]
                    carry = (exchange_at, change.exchange("\n".join(per_step.get(exchange_at, []))))
        except UnreachableError:
            raise
        except Exception as exc:  # plugin code (a backend's sign_csr, a lazy download) failed mid-apply
            if not ran:
                raise
            detail = str(exc) if isinstance(exc, (MeshctlError, OperationError)) else f"{type(exc).__name__}: {exc}"
            self._failed(current, f"step {current + 1}/{total} '{changes[current].op}': {detail}")
            self._rollback()

    def _failed(self, idx: int, error: str) -> None:
        result = self.result
        result.status = "failed"
        result.failed_step = str(result.changes[idx].op)
        result.changes = result.changes[:idx]
        result.error = error

    def _rollback(self) -> None:
        """Undo the earlier round trips of a run that cannot go on."""
        script = applyscript.render_apply_script([], "@@meshctl-rollback", None, self.run_id, final=False) + "exit 1\n"
        _rc, out = self.session.run(script, timeout=300)
        note = "\n".join(line for line in out.splitlines() if line.startswith("meshctl:"))
        if note:
            self.result.error = f"{self.result.error}\n{note}"

    def _run_steps(self, steps: list[tuple[int, list[Cmd]]], total: int,
                   final: bool = True) -> dict[int, list[str]] | None:
        """One round trip; returns each step's output, or None after recording a failure."""
        boundary = "@@meshctl-" + secrets.token_hex(8)
        changes = self.result.changes
        uploads = [u for i, _ in steps for u in changes[i].uploads]
        stage = None
        if uploads:
            self.reporter.host_phase(self.node, f"uploading {len(uploads)} file(s)")
            stage = self.session.upload(uploads)
        script = applyscript.render_apply_script(steps, boundary, stage, self.run_id, final)
        per_step: dict[int, list[str]] = {}
        state: dict[str, Any] = {"step": -1, "failed": None, "done": False}

        def on_line(line: str) -> None:
            if line.startswith(boundary + " "):
                tag = line[len(boundary) + 1 :].split()
                if tag[0] == "step":
                    state["step"] = int(tag[1])
                    self.reporter.step(self.node, state["step"] + 1, total, str(changes[state["step"]].op))
                elif tag[0] == "fail":
                    state["failed"] = (int(tag[1]), tag[2] if len(tag) > 2 else "?")
                elif tag[0] == "done":
                    state["done"] = True
                return
            per_step.setdefault(state["step"], []).append(line)

        rc, _out = self.session.run(script, on_line=on_line, timeout=self.timeout)
        if state["failed"] is not None:
            idx, code = state["failed"]
            change = changes[idx]
            out = "\n".join(per_step.get(idx, [])[-25:]).strip()
            self._failed(idx, f"step {idx + 1}/{total} '{change.op}' ({change.summary}) failed with exit "
                         f"{code}" + (f":\n{out}" if out else ""))
            return None
        if not state["done"]:
            self.result.status = "failed"
            self.result.error = f"apply script ended early (exit {rc}): " + tail("\n".join(per_step.get(state["step"], [])))
            return None
        return per_step


def tail(text: str, n: int = 10) -> str:
    return "\n".join(text.strip().splitlines()[-n:])
