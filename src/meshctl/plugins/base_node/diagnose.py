"""``meshctl diagnose NODE``: everything needed to debug a node, as one tar.gz,
with every secret redacted on this machine before anything is written."""

from __future__ import annotations

import io
import re
import shlex
import tarfile
import time
from collections.abc import Iterable
from typing import Any

from meshctl.plugin import receptor as R

M = "@@meshctl-diag"
MAX_UNITS = 20
MAX_UNIT_BYTES = 64 * 1024


def script(node_name: str, user: str, execution: bool, datadir: str = R.DATA_DIR,
           runner: str = "ansible-runner", receptorctl: str = "receptorctl") -> str:
    u = shlex.quote(user)
    cert = shlex.quote(R.node_cert(node_name))
    # Nodes that an older meshctl or an AWX bundle set up keep work units in /tmp/receptor.
    dirs = " ".join(shlex.quote(f"{d}/{node_name}") for d in dict.fromkeys((datadir, "/tmp/receptor")))
    parts = [
        ("receptor.conf", f"cat {R.CONF_FILE}"),
        ("unit-status.txt", f"systemctl status {R.UNIT_NAME} --no-pager -l 2>&1; systemctl cat {R.UNIT_NAME} 2>&1"),
        ("receptor.log", f"tail -n 500 {R.LOG_FILE} 2>&1"),
        ("journal.txt", f"journalctl -u {R.UNIT_NAME} -n 500 --no-pager 2>&1"),
        ("certificates.txt",
         f"for f in {cert} {R.CA_FILE}; do echo \"== $f\"; openssl x509 -in \"$f\" -noout -subject -issuer -dates "
         "-serial -ext subjectAltName,keyUsage,extendedKeyUsage 2>&1; done"),
        ("versions.txt", f"{R.BINARY} --version 2>&1; {runner} --version 2>&1; cat /etc/os-release; uname -a"),
        ("listening.txt", "ss -ltnp 2>&1"),
        # stdout alone, so the file stays JSON: receptorctl 1.6.9 warns on stderr whenever
        # its version differs from receptor's. Its stderr goes to a file of its own.
        ("mesh-status.json", f"_e='no control socket'; if [ -S {R.SOCKET} ]; then {{ _e=$(timeout 15 runuser "
                             f"-u {u} -- {receptorctl} --socket {R.SOCKET} status --json 2>&1 >&3 3>&-); "
                             "} 3>&1; fi"),
        ("mesh-status.stderr.txt", "printf '%s\\n' \"$_e\""),
    ]
    if execution:
        parts += [
            ("podman-info.txt", f"runuser -l {u} -c 'podman info' 2>&1"),
            ("worker-info.txt", f"timeout 30 runuser -u {u} -- {runner} worker --worker-info 2>&1"),
        ]
    lines = []
    for name, cmd in parts:
        lines.append(f"printf '%s file %s\\n' '{M}' {shlex.quote(name)}; {{ {cmd} ; }} </dev/null")
    # The work units' status and stdout hold the real error behind "exit status 1".
    lines.append(
        f"for w in {dirs}; do [ -d \"$w\" ] || continue; ls -1t \"$w\" | head -n {MAX_UNITS} | while IFS= read -r d; do "
        f"for f in status stdout; do [ -f \"$w/$d/$f\" ] || continue; "
        f"printf '%s file %s\\n' '{M}' \"work-units/$d/$f\"; tail -c {MAX_UNIT_BYTES} \"$w/$d/$f\"; echo; "
        "done; done; done")
    lines.append(f"printf '%s end\\n' '{M}'")
    return "\n".join(lines) + "\n"


def split(output: str) -> dict[str, str]:
    files: dict[str, list[str]] = {}
    cur = None
    for line in output.splitlines():
        if line.startswith(M + " file "):
            cur = line[len(M) + 6 :]
            files[cur] = []
        elif line.startswith(M + " end"):
            cur = None
        elif cur is not None:
            files[cur].append(line)
    return {k: "\n".join(v) + "\n" for k, v in files.items()}


_PEM_KEY = re.compile(r"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.*?-----END \1PRIVATE KEY-----", re.S)
_KV = re.compile(r'(?i)("?(?:auth|password|passwd|token|secret|authorization)"?\s*[:=]\s*)("[^"]*"|\'[^\']*\'|\S+)')


def redact(text: str, secrets: Iterable[str]) -> tuple[str, int]:
    """Remove private keys, password-like values and every known secret."""
    n = 0

    def sub(pattern: re.Pattern[str], repl: Any, s: str) -> str:
        nonlocal n
        s, k = pattern.subn(repl, s)
        n += k
        return s

    text = sub(_PEM_KEY, "[private key redacted by meshctl]", text)
    text = sub(_KV, lambda m: m.group(1) + '"[redacted]"', text)
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        count = text.count(secret)
        if count:
            text = text.replace(secret, "[redacted]")
            n += count
    return text, n


def archive(node_name: str, files: dict[str, str], secrets: Iterable[str]) -> tuple[bytes, int]:
    """A tar.gz of the node's files (redacted) plus a MANIFEST."""
    secrets = list(secrets)
    buf = io.BytesIO()
    total = 0
    now = time.time()
    root = f"meshctl-diagnose-{node_name}"
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        manifest = [f"meshctl diagnose of {node_name} at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(now))}",
                    "Secrets (private keys, passwords, registry credentials) were redacted before writing.", ""]
        for name, content in sorted(files.items()):
            clean, n = redact(content, secrets)
            total += n
            data = clean.encode()
            info = tarfile.TarInfo(f"{root}/{name}")
            info.size, info.mtime, info.mode = len(data), int(now), 0o600
            tar.addfile(info, io.BytesIO(data))
            manifest.append(f"{name}: {len(data)} bytes" + (f", {n} redaction(s)" if n else ""))
        if not any(k.startswith("work-units/") for k in files):
            manifest.append("work-units: none in receptor's data directory on the node")
        data = ("\n".join(manifest) + "\n").encode()
        info = tarfile.TarInfo(f"{root}/MANIFEST")
        info.size, info.mtime, info.mode = len(data), int(now), 0o600
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue(), total


def known_secrets(plugins: Any, topo: Any, node: Any) -> list[str]:
    """What plugins say must never show up in output about ``node`` (registry passwords...)."""
    out: list[str] = []
    for found in plugins.pm.hook.meshctl_known_secrets(topology=topo, node=node):
        out += [s for s in found or () if s]
    return out
