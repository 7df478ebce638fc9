"""``meshctl status``: one round trip per node, judged here."""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

from meshctl.plugin import pki as C
from meshctl.plugin import receptor as R

M = "@@meshctl-status"


def mesh_status(user: str, receptorctl: str = "receptorctl") -> str:
    """``receptorctl status --json`` with its JSON on stdout and its stderr in a section
    of its own: receptorctl 1.6.9 warns on stderr whenever receptor's version differs
    from its own, which would break the JSON if merged. ``user`` is shell-quoted;
    ``receptorctl`` is the tool's path on the node (``Topology.tool``)."""
    # fd 3 carries stdout past the command substitution, which captures only stderr.
    return (f"if [ -S {R.SOCKET} ]; then {{ _e=$(timeout 15 runuser -u {user} -- {receptorctl} "
            f"--socket {R.SOCKET} status --json 2>&1 >&3 3>&- </dev/null); _rc=$?; }} 3>&1; "
            f"printf '\\n%s mesh-stderr\\n%s\\n%s mesh-rc\\n%s\\n' '{M}' \"$_e\" '{M}' \"$_rc\"; "
            "else echo nosocket; fi")


def script(node_name: str, user: str, execution: bool, port: int | None,
           runner: str = "ansible-runner", receptorctl: str = "receptorctl") -> str:
    u = shlex.quote(user)
    worker = (f"timeout 30 runuser -u {u} -- {runner} worker --worker-info 2>&1; echo \"rc=$?\""
              if execution else "echo skipped")
    return f"""\
printf '%s service\\n' '{M}'; systemctl show {R.UNIT_NAME} -p ActiveState -p SubState -p ActiveEnterTimestamp -p UnitFileState 2>/dev/null
printf '%s conf\\n' '{M}'; if [ -f {R.CONF_FILE} ]; then echo present; else echo absent; fi
printf '%s listen\\n' '{M}'; ss -ltnH 2>/dev/null | awk '{{print $4}}' | grep -E ':{port or 0}$' || true
printf '%s cert\\n' '{M}'; cat {shlex.quote(R.node_cert(node_name))} 2>/dev/null
printf '%s receptor\\n' '{M}'; if [ -x {R.BINARY} ]; then {R.BINARY} --version 2>&1 | head -n 1; else echo absent; fi
printf '%s runner\\n' '{M}'; if [ -x {runner} ]; then {runner} --version 2>&1 | head -n 1; else echo absent; fi
printf '%s worker\\n' '{M}'; {worker}
printf '%s mesh\\n' '{M}'; {mesh_status(u, receptorctl)}
printf '%s end\\n' '{M}'
"""


def parse(output: str) -> dict[str, str]:
    parts: dict[str, list[str]] = {}
    cur = None
    for line in output.splitlines():
        if line.startswith(M + " "):
            cur = line[len(M) + 1 :].strip()
            parts[cur] = []
        elif cur is not None:
            parts[cur].append(line)
    return {k: "\n".join(v).strip() for k, v in parts.items()}


def _kv(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


_V = re.compile(r"\d+\.\d+\.\d+\S*")


def evaluate(sections: dict[str, str], *, node: Any, start: bool, warn_days: int) -> tuple[list, dict]:
    checks: list[tuple[str, bool, str]] = []
    info: dict[str, Any] = {"node": node.name, "role": node.role}
    if "end" not in sections:
        return [("status", False, "the node's report was cut short")], info
    svc = _kv(sections.get("service", ""))
    state = svc.get("ActiveState", "unknown")
    since = svc.get("ActiveEnterTimestamp", "") if state == "active" else ""
    info.update(receptor_state=state, since=since, enabled=svc.get("UnitFileState", ""))
    conf = sections.get("conf") == "present"
    checks.append(("config", conf, "receptor.conf present" if conf else f"{R.CONF_FILE} is missing"))
    if start:
        checks.append(("receptor", state == "active", f"{state}" + (f" since {since}" if since else "")))
    else:
        checks.append(("receptor", True, f"{state} (receptor.start is false: not started by meshctl)"))
    port = node.listener.port if node.listener else None
    listening = bool(sections.get("listen"))
    info["listener"] = {"port": port, "open": listening}
    if port and start:
        checks.append(("listener", listening, f"port {port} " + ("open" if listening else "not listening")))
    pem = sections.get("cert", "")
    if "BEGIN CERTIFICATE" in pem:
        st = C.inspect_cert((pem + "\n").encode())
        info["cert_days_left"] = round(st.days_left, 1)
        ok = st.days_left > 0
        detail = f"{st.days_left:.0f} days left" + (" (renew soon: meshctl certs renew)" if 0 < st.days_left < warn_days
                                                     else "")
        checks.append(("certificate", ok, detail if ok else f"expired on {st.not_after:%Y-%m-%d}"))
    else:
        info["cert_days_left"] = None
        checks.append(("certificate", False, f"no certificate at {R.node_cert(node.name)}"))
    for key in ("receptor", "runner"):
        m = _V.search(sections.get(key, ""))
        info[f"{key}_version"] = m.group(0) if m else None
    worker = sections.get("worker", "skipped")
    if worker != "skipped":
        rc = worker.rsplit("rc=", 1)[-1].strip() if "rc=" in worker else "?"
        body = worker.rsplit("rc=", 1)[0]
        try:
            import yaml

            data = yaml.safe_load(body) or {}
        except Exception:
            data = {}
        errors = data.get("errors") if isinstance(data, dict) else None
        ok = rc == "0" and isinstance(data, dict) and errors == []
        info["worker"] = {k: data.get(k) for k in ("cpu_count", "mem_in_bytes", "runner_version", "errors")} \
            if isinstance(data, dict) else None
        detail = (f"cpu {data.get('cpu_count')}, memory {int(data.get('mem_in_bytes') or 0) // 2**20} MiB"
                  if ok else f"worker-info failed (rc {rc}): {(errors or body.strip()[-200:])}")
        checks.append(("worker-info", ok, detail))
    mesh = sections.get("mesh", "nosocket")
    if mesh != "nosocket":
        ok, detail, mesh_info = mesh_check(mesh, sections.get("mesh-stderr", ""), sections.get("mesh-rc"))
        if mesh_info is not None:
            info["mesh"] = mesh_info
        checks.append(("mesh", ok, detail))
    return checks, info


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
VERSION_WARNING = "receptorctl and receptor are different versions"


def mesh_check(stdout: str, stderr: str, rc: str | None) -> tuple[bool, str, dict[str, Any] | None]:
    """Judge ``receptorctl status --json`` from its stdout alone. A version warning
    on stderr is shown, not failed on (receptorctl compares its own version with
    receptor's, and release binaries report theirs with a leading "v")."""
    err = [line.strip() for line in _ANSI.sub("", stderr).splitlines() if line.strip()]
    warnings = [line for line in err if VERSION_WARNING in line]
    try:
        st = json.loads(stdout)
    except ValueError:
        st = None
    if isinstance(st, dict):
        routes = sorted((st.get("RoutingTable") or {}).keys())
        known = sorted(str(n.get("NodeID", "?")) for n in (st.get("Advertisements") or []) if isinstance(n, dict))
        detail = f"{len(known)} known nodes, routes to {len(routes)}"
        if warnings:
            detail += f" (receptorctl: {warnings[0]})"
        return True, detail, {"routes": routes, "known_nodes": known, "warnings": err}
    other = [line for line in err if VERSION_WARNING not in line] or err
    # A Python traceback's first line says nothing; its last names the error.
    why = (other[-1] if other[0].startswith("Traceback") else other[0]) if other else ""
    if not why and rc and rc.strip() == "124":  # timeout(1)
        why = "no answer within 15 s"
    why = why or (stdout.strip().splitlines() or ["no output"])[-1]
    code = f" (exit {rc.strip()})" if rc and rc.strip() not in ("", "0") else ""
    return False, f"receptorctl status failed{code}: {why[:200]}", None


def skew(rows: list[dict[str, Any]]) -> list[str]:
    """One line per component whose version differs between nodes."""
    out = []
    for key, label in (("receptor_version", "receptor"), ("runner_version", "ansible-runner")):
        seen: dict[str, list[str]] = {}
        for r in rows:
            if r.get(key):
                seen.setdefault(r[key], []).append(r["node"])
        if len(seen) > 1:
            out.append(f"version skew: {label} " + "; ".join(f"{v} on {', '.join(ns)}" for v, ns in sorted(seen.items())))
    return out


def with_views(rows: list[dict[str, Any]], views: list[Any]) -> list[dict[str, Any]]:
    """meshctl's rows with each ``StatusView``'s data (``row[view.name]``) and what it
    disagrees with (``row["disagree"]``); nodes only a view knows (unmanaged ones) get
    a row of their own, ``healthy`` None: meshctl did not look at them."""
    out = [dict(r) for r in rows]
    by_node = {r["node"]: r for r in out}
    for view in views:
        for name in [*view.nodes, *view.disagree]:
            if name not in by_node:
                by_node[name] = {"node": name, "healthy": None, "managed": False}
                out.append(by_node[name])
    for row in out:
        row["disagree"] = []
        for view in views:
            if row["node"] in view.nodes:
                row[view.name] = dict(view.nodes[row["node"]])
            row["disagree"] += [str(d) for d in view.disagree.get(row["node"], ())]
    return out
