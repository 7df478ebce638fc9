"""Preflight: the checks receptor makes at start-up, made first.

The host prints what is on its disk (receptor.conf, certificates, public halves of
keys, which files the service user can read, listening sockets, name resolution,
its clock, the receptor binary) in one round trip; everything is judged here, so
the same code serves ``meshctl preflight`` and the check before every restart.
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

from meshctl.plugin import pki as C
from meshctl.plugin import receptor as R

MARK = "@@meshctl-preflight"
MAX_CLOCK_SKEW = 30.0

# receptor's configuration sections and their keys (receptor pkg/*), as receptor
# rejects unknown ones at start-up.
KNOWN: dict[str, set[str]] = {
    "node": {"id", "datadir", "firewallrules", "maxidleconnectiontimeout", "receptorkubesupportreconnect",
             "receptorkubeclientsetqps", "receptorkubeclientsetburst", "receptorkubeclientsetratelimiter"},
    "log-level": set(),
    "control-service": {"service", "filename", "permissions", "tls", "tcplisten", "tcptls"},
    "tcp-listener": {"bindaddr", "port", "tls", "cost", "nodecost", "allowedpeers"},
    "tcp-peer": {"address", "redial", "tls", "cost", "allowedpeers"},
    "ws-listener": {"bindaddr", "port", "path", "tls", "cost", "nodecost", "allowedpeers"},
    "ws-peer": {"address", "redial", "tls", "cost", "extraheader", "allowedpeers"},
    "tls-server": {"name", "cert", "key", "requireclientcert", "clientcas", "pinnedclientcert",
                   "skipreceptornamescheck", "mintls13"},
    "tls-client": {"name", "cert", "key", "rootcas", "insecureskipverify", "pinnedservercert",
                   "skipreceptornamescheck", "mintls13"},
    "work-command": {"worktype", "command", "params", "allowruntimeparams", "verifysignature"},
    "work-signing": {"privatekey", "tokenexpiration"},
    "work-verification": {"publickey"},
}


def script(user: str, peers: Iterable[str], conf: str = R.CONF_FILE) -> str:
    """Shell printing everything preflight judges, between marker lines."""
    u = shlex.quote(user)
    hosts = " ".join(shlex.quote(h) for h in peers) or ""
    m = MARK
    return f"""\
printf '%s conf\\n' '{m}'; cat {shlex.quote(conf)} 2>/dev/null
for f in {R.TLS_DIR}/*.crt {R.CA_DIR}/*.crt; do [ -f "$f" ] || continue; printf '%s cert %s\\n' '{m}' "$f"; cat "$f"; done
for f in {R.TLS_DIR}/*.key; do [ -f "$f" ] || continue; printf '%s pubkey %s\\n' '{m}' "$f"; openssl pkey -in "$f" -pubout 2>&1; done
find {R.CONF_DIR} {R.LOG_DIR} -type f 2>/dev/null | while IFS= read -r f; do
  if runuser -u {u} -- test -r "$f" 2>/dev/null; then r=1; else r=0; fi; printf '%s readable %s %s\\n' '{m}' "$r" "$f"
done
for d in {R.RUN_DIR} {R.LOG_DIR}; do
  if runuser -u {u} -- test -w "$d" 2>/dev/null; then r=1; else r=0; fi; printf '%s writable %s %s\\n' '{m}' "$r" "$d"
done
printf '%s listen\\n' '{m}'; ss -ltnpH 2>/dev/null || true
for h in {hosts}; do if getent hosts "$h" >/dev/null 2>&1; then r=1; else r=0; fi; printf '%s resolve %s %s\\n' '{m}' "$r" "$h"; done
printf '%s clock %s\\n' '{m}' "$(date +%s)"
printf '%s binary\\n' '{m}'; if [ -x {R.BINARY} ]; then {R.BINARY} --version 2>&1 | head -n 1; else echo absent; fi
printf '%s end\\n' '{m}'
"""


@dataclass
class Dump:
    conf: str | None = None
    certs: dict[str, bytes] = field(default_factory=dict)
    pubkeys: dict[str, str] = field(default_factory=dict)
    readable: dict[str, bool] = field(default_factory=dict)
    writable: dict[str, bool] = field(default_factory=dict)
    listen: list[str] = field(default_factory=list)
    resolve: dict[str, bool] = field(default_factory=dict)
    clock: float | None = None
    binary: str = ""
    complete: bool = False


def parse(output: str) -> Dump:
    d = Dump()
    cur: tuple[str, str] | None = None
    buf: list[str] = []

    def flush() -> None:
        if cur is None:
            return
        kind, arg = cur
        text = "\n".join(buf).strip("\n")
        if kind == "conf":
            d.conf = text + "\n" if text else None
        elif kind == "cert":
            d.certs[arg] = (text + "\n").encode()
        elif kind == "pubkey":
            d.pubkeys[arg] = text + "\n"
        elif kind == "listen":
            d.listen = [ln for ln in buf if ln.strip()]
        elif kind == "binary":
            d.binary = text.strip()

    for line in output.splitlines():
        if line.startswith(MARK + " "):
            flush()
            cur, buf = None, []
            kind, _, rest = line[len(MARK) + 1 :].partition(" ")
            if kind in ("readable", "writable", "resolve"):
                flag, _, path = rest.partition(" ")
                getattr(d, kind)[path] = flag == "1"
            elif kind == "clock":
                try:
                    d.clock = float(rest)
                except ValueError:
                    d.clock = None
            elif kind == "end":
                d.complete = True
            else:
                cur = (kind, rest)
            continue
        if cur is not None:
            buf.append(line)
    flush()
    return d


Result = tuple[str, bool, str]


def evaluate(dump: Dump, node_id: str, *, received_at: float | None = None, need_binary: bool = True,
             max_skew: float = MAX_CLOCK_SKEW, dialed_as: Iterable[str] = ()) -> list[Result]:
    """(check, passed, detail) for each preflight check. ``dialed_as``: the addresses
    peers dial this node at, which its server certificate must name."""
    out: list[Result] = []
    if not dump.complete:
        return [("preflight", False, "the host's preflight output was cut short")]
    sections = _sections(dump, out)
    if sections is not None:
        _node_id(sections, node_id, out)
        _tls(sections, dump, node_id, out, list(dialed_as))
        _files_readable(sections, dump, out)
        _listeners(sections, dump, out)
    _resolution(dump, out)
    _clock(dump, received_at, max_skew, out)
    if need_binary:
        ok = dump.binary not in ("", "absent")
        out.append(("receptor-binary", ok, dump.binary if ok else f"{R.BINARY} is missing"))
    return out


def _sections(dump: Dump, out: list[Result]) -> list[tuple[str, Any]] | None:
    if dump.conf is None:
        out.append(("config-parses", False, f"{R.CONF_FILE} is missing"))
        return None
    try:
        data = yaml.safe_load(dump.conf)
    except yaml.YAMLError as exc:
        out.append(("config-parses", False, f"{R.CONF_FILE} is not valid YAML: {exc}"))
        return None
    if not isinstance(data, list) or not all(isinstance(s, dict) and len(s) == 1 for s in data):
        out.append(("config-parses", False, f"{R.CONF_FILE} must be a list of one-key sections"))
        return None
    sections = [next(iter(s.items())) for s in data]
    problems = []
    for name, body in sections:
        if name not in KNOWN:
            problems.append(f"unknown section {name!r}")
        elif isinstance(body, dict):
            unknown = sorted(set(body) - KNOWN[name])
            if unknown:
                problems.append(f"{name}: unknown key(s) {', '.join(unknown)}")
    out.append(("config-parses", not problems, "; ".join(problems) or f"{len(sections)} known sections"))
    return sections


def _node_id(sections: list[tuple[str, Any]], node_id: str, out: list[Result]) -> None:
    ids = [b.get("id") for n, b in sections if n == "node" and isinstance(b, dict)]
    ok = ids == [node_id]
    out.append(("node-id", ok, f"node.id {ids[0] if ids else '(none)'}" + ("" if ok else f", want {node_id}")))


def _tls(sections: list[tuple[str, Any]], dump: Dump, node_id: str, out: list[Result],
         dialed_as: list[str] | None = None) -> None:
    for name, body in sections:
        if name not in ("tls-server", "tls-client") or not isinstance(body, dict):
            continue
        label = f"{name}:{body.get('name', '?')}"
        cert_pem = dump.certs.get(str(body.get("cert")))
        if cert_pem is None:
            out.append((f"{label} cert", False, f"{body.get('cert')} is missing"))
            continue
        skip_names = bool(body.get("skipreceptornamescheck"))
        ca_path = body.get("rootcas") if name == "tls-client" else body.get("clientcas")
        ca_pem = dump.certs.get(str(ca_path)) if ca_path else None
        key_pub = dump.pubkeys.get(str(body.get("key")), "")
        try:
            st = C.inspect_cert(cert_pem, ca_pem, key_pub.encode() if "BEGIN PUBLIC KEY" in key_pub else None)
        except ValueError as exc:
            out.append((f"{label} cert", False, f"{body.get('cert')}: unparsable ({exc})"))
            continue
        if not skip_names:
            ok = node_id in st.node_ids
            out.append((f"{label} node-id", ok, f"NodeID otherName {st.node_ids or 'missing'}"
                        + ("" if ok else f": receptor would exit with 'nodeID={node_id} not found'")))
        if "BEGIN PUBLIC KEY" not in key_pub:
            out.append((f"{label} key", False, f"{body.get('key')}: {key_pub.strip() or 'missing'}"))
        else:
            out.append((f"{label} key", bool(st.key_matches), "key matches certificate" if st.key_matches
                        else f"{body.get('key')} is not the key of {body.get('cert')}"))
        if ca_path:
            if ca_pem is None:
                out.append((f"{label} chain", False, f"{ca_path} is missing"))
            else:
                out.append((f"{label} chain", bool(st.chain_ok), f"chains to {ca_path}" if st.chain_ok
                            else "; ".join(st.chain_problems or ["does not chain"])))
        if st.days_left <= 0:
            out.append((f"{label} validity", False, f"expired on {st.not_after:%Y-%m-%d}: peers refuse it "
                        "('x509: certificate has expired or is not yet valid')"))
        elif st.not_before > st.checked_at:
            out.append((f"{label} validity", False, f"not valid before {st.not_before:%Y-%m-%d %H:%M} UTC: peers "
                        "refuse it until then (clock skew?)"))
        if name == "tls-server":
            # A dialer checks that the certificate names the host it dialed (receptor's tcp/ws peers).
            named = {n.lower() for n in st.dns_names} | set(st.ip_addresses)
            for addr in dialed_as or ():
                ok = addr.lower() in named or addr in named
                out.append((f"{label} san {addr}", ok, f"names {addr}" if ok else
                            f"subjectAltName lacks {addr}: peers dialing {addr} fail with 'x509: certificate "
                            f"is valid for {', '.join(sorted(named)) or 'no names'}, not {addr}'"))


def _referenced_files(sections: list[tuple[str, Any]]) -> list[str]:
    keys = {"cert", "key", "rootcas", "clientcas", "publickey", "privatekey"}
    files = []
    for _name, body in sections:
        if isinstance(body, dict):
            files += [str(v) for k, v in body.items() if k in keys and v]
    return list(dict.fromkeys([R.CONF_FILE, *files]))  # tls-server and tls-client share files


def _files_readable(sections: list[tuple[str, Any]], dump: Dump, out: list[Result]) -> None:
    bad = [f for f in _referenced_files(sections) if not dump.readable.get(f, False)]
    out.append(("files-readable", not bad, "the service user can read every file receptor opens" if not bad
                else "not readable by the service user: " + ", ".join(bad)))
    notw = [d for d, ok in dump.writable.items() if not ok]
    out.append(("dirs-writable", not notw, "socket and log directories writable" if not notw
                else "not writable by the service user: " + ", ".join(notw)))


_SS_RE = re.compile(r"\S+\s+\S+\s+\S+\s+(?P<local>\S+)\s+\S+(?:\s+(?P<users>users:.*))?$")


def _listeners(sections: list[tuple[str, Any]], dump: Dump, out: list[Result]) -> None:
    ports = [int(b.get("port")) for n, b in sections if n in ("tcp-listener", "ws-listener") and isinstance(b, dict)
             and str(b.get("port", "")).isdigit()]
    for port in ports:
        owners = []
        for line in dump.listen:
            m = _SS_RE.match(line.strip())
            if m and m.group("local").rsplit(":", 1)[-1] == str(port):
                owners.append(m.group("users") or "unknown process")
        others = [o for o in owners if '"receptor"' not in o]
        out.append((f"port-{port}", not others, "free or held by receptor" if not others
                    else f"port {port} is in use by {others[0]}"))


def _resolution(dump: Dump, out: list[Result]) -> None:
    bad = [h for h, ok in dump.resolve.items() if not ok]
    out.append(("peers-resolve", not bad, "peer addresses resolve on the node" if not bad
                else "cannot resolve from the node: " + ", ".join(bad)))


def _clock(dump: Dump, received_at: float | None, max_skew: float, out: list[Result]) -> None:
    if dump.clock is None:
        out.append(("clock", False, "the node did not report its time"))
        return
    now = received_at if received_at is not None else time.time()
    skew = dump.clock - now
    ok = abs(skew) <= max_skew
    out.append(("clock", ok, f"{skew:+.0f} s from this machine" + ("" if ok else
                f": work signatures expire after a minute; run NTP (limit {max_skew:.0f} s)")))


def dialed_as(topology: Any, node: Any) -> list[str]:
    """The address peers dial ``node`` at, when any peer dials it."""
    if node.listener is None or not topology.inbound_peers(node):
        return []
    return [node.address]


def peer_hosts(topology: Any, node: Any) -> list[str]:
    """Peer addresses that need resolving (names, not IPs)."""
    from meshctl.plugin import valid_address

    hosts = []
    for name in node.peers:
        addr = topology.node(name).address
        if valid_address(addr) and not _is_ip(addr) and addr not in hosts:
            hosts.append(addr)
    return hosts


def _is_ip(value: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False
