"""Progress display (rich on a terminal, plain lines otherwise) and summaries."""

from __future__ import annotations

import json
import sys
import threading
from typing import Any, TextIO

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from meshctl.core.ops import Change
from meshctl.core.results import HostResult, Reporter, drift

STATUS_STYLE = {"ok": "green", "changed": "yellow", "failed": "bold red", "unreachable": "bold magenta"}


class PlainReporter(Reporter):
    """One line per event, safe for logs and CI."""

    def __init__(self, stream: TextIO | None = None, verbose: bool = False):
        self.stream = stream or sys.stderr
        self.verbose = verbose
        self._lock = threading.Lock()

    def _say(self, text: str) -> None:
        with self._lock:
            print(text, file=self.stream, flush=True)

    def host_phase(self, node: str, phase: str) -> None:
        if self.verbose or phase.startswith("applying"):
            self._say(f"[{node}] {phase}")

    def step(self, node: str, index: int, total: int, description: str) -> None:
        if self.verbose:
            self._say(f"[{node}] step {index}/{total}: {description}")

    def host_done(self, result: HostResult) -> None:
        extra = f" ({result.round_trips} round trips, {result.duration:.1f}s)" if self.verbose else ""
        msg = f"[{result.node}] {result.status}"
        if result.status in ("ok", "changed"):
            msg += f": {result.changed} changed, {len(result.unchanged)} ok"
        msg += extra
        self._say(msg)


class RichReporter(Reporter):
    """A live table: one row per host with its current phase or step."""

    def __init__(self, nodes: list[str], console: Console):
        self.console = console
        self.rows: dict[str, str] = {n: "waiting" for n in nodes}
        self._lock = threading.Lock()
        self.live = Live(self._table(), console=console, refresh_per_second=8, transient=True)

    def _table(self) -> Table:
        t = Table(show_header=True, header_style="bold", box=None)
        t.add_column("node")
        t.add_column("progress")
        for node, state in self.rows.items():
            t.add_row(escape(node), state)
        return t

    def _set(self, node: str, text: str) -> None:
        with self._lock:
            self.rows[node] = text
            self.live.update(self._table())

    def __enter__(self) -> RichReporter:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.live.__exit__(*exc)

    def host_phase(self, node: str, phase: str) -> None:
        self._set(node, f"[cyan]{escape(phase)}[/]")

    def step(self, node: str, index: int, total: int, description: str) -> None:
        self._set(node, f"[yellow]{index}/{total}[/] {escape(description)}")  # paths may hold "[...]"

    def host_done(self, result: HostResult) -> None:
        style = STATUS_STYLE.get(result.status, "")
        self._set(result.node, f"[{style}]{result.status}[/]")


def summary_counts(results: list[HostResult]) -> dict[str, int]:
    counts = {"ok": 0, "changed": 0, "failed": 0, "unreachable": 0}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    return counts


def print_summary(console: Console, results: list[HostResult], verbose: bool, title: str) -> None:
    t = Table(title=title, title_justify="left", header_style="bold")
    t.add_column("node")
    t.add_column("status")
    t.add_column("ok", justify="right")
    t.add_column("changed", justify="right")
    if verbose:
        t.add_column("round trips", justify="right")
        t.add_column("time", justify="right")
    for r in results:
        style = STATUS_STYLE.get(r.status, "")
        row = [r.node, f"[{style}]{r.status}[/]", str(len(r.unchanged)), str(r.changed)]
        if verbose:
            row += [str(r.round_trips), f"{r.duration:.1f}s"]
        t.add_row(*(escape(x) if i == 0 else x for i, x in enumerate(row)))
    console.print(t)
    c = summary_counts(results)
    console.print(
        f"{len(results)} host(s): {c['ok']} ok, {c['changed']} changed, "
        f"{c['failed']} failed, {c['unreachable']} unreachable"
    )
    for r in results:
        for nc in r.unchanged:
            if nc.warning:
                console.print(f"{escape(r.node)}: {escape(nc.reason)}", highlight=False)
        if r.error:
            cause = f" [{r.cause}]" if r.cause else ""
            console.print(f"[bold red]{escape(r.node + cause)}:[/] {escape(r.error)}", highlight=False)


def describe_change(change: Change, detailed: bool) -> list[str]:
    lines = [f"  ~ {change.op}: {change.summary}"]
    if change.secret:
        lines.append("      (content masked: secret)")
        return lines
    diff = change.diff
    if diff and (detailed or change.summary != "create"):
        lines.extend("      " + line for line in diff.rstrip("\n").splitlines())
    elif diff and change.summary == "create":
        lines.append(f"      (new, {len(diff.splitlines()) - 3} lines; --detailed shows them)")
    return lines


def print_plan(console: Console, results: list[HostResult], detailed: bool) -> None:
    for r in results:
        if r.status in ("failed", "unreachable"):
            continue
        if r.changed:
            head = f"{r.node}: {r.changed} to change, {len(r.unchanged)} unchanged -- drift: {', '.join(drift(r.changes))}"
        else:
            head = f"{r.node}: in sync ({len(r.unchanged)} checked)"
        console.print(f"[bold]{escape(head)}[/]" if r.changed else escape(head), highlight=False)
        for change in r.changes:
            for line in describe_change(change, detailed):
                console.print(line, markup=False, highlight=False)
        for nc in r.unchanged:
            if nc.warning:
                console.print(f"  ! {nc.op}: {nc.reason}", markup=False, highlight=False)
            elif detailed:
                console.print(f"  = {nc.op}: {nc.reason}", markup=False, highlight=False)


def print_json(data: Any, stream: TextIO | None = None) -> None:
    json.dump(data, stream or sys.stdout, indent=2, sort_keys=False)
    (stream or sys.stdout).write("\n")


def print_checks(console: Console, results: list[HostResult], title: str = "verify") -> None:
    t = Table(title=title, title_justify="left", header_style="bold")
    for col in ("node", "check", "result", "detail"):
        t.add_column(col)
    for r in results:
        if not r.checks:
            t.add_row(escape(r.node), "-", f"[{STATUS_STYLE.get(r.status, '')}]{r.status}[/]",
                      escape(r.error or ""))
        for name, ok, detail in r.checks:
            t.add_row(escape(r.node), escape(name), "[green]pass[/]" if ok else "[bold red]FAIL[/]", escape(detail))
    console.print(t)
    bad = sum(1 for r in results if r.status != "ok")
    console.print(f"{len(results)} host(s): {len(results) - bad} passed, {bad} failed")
