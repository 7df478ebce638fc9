"""The node certificate operation: inspect what the node has, reissue only when
needed, with the key made on the node (only a CSR travels) or here."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from meshctl.plugin import (
    Change,
    Cmd,
    File,
    MeshctlError,
    NoChange,
    Operation,
    PlanResult,
    attr_fixes,
)
from meshctl.plugin import facts as F
from meshctl.plugin import pki as C

_CSR_RE = re.compile(r"-----BEGIN CERTIFICATE REQUEST-----.+?-----END CERTIFICATE REQUEST-----", re.S)


def pubkey_fact(key_path: str) -> F.Fact:
    """The public half of a private key on the node (never the key itself)."""
    q = shlex.quote(key_path)
    cmd = (f"if [ ! -e {q} ]; then echo state=absent; "
           f"elif command -v openssl >/dev/null 2>&1; then echo state=present; openssl pkey -in {q} -pubout 2>&1; "
           "else echo state=unknown; fi")
    # The public half is no secret and depends on the key file alone: memoized.
    return F.Fact(key=f"pubkey:{key_path}", command=cmd, kind="pubkey", parser=_parse_pubkey, memo=key_path)


def _parse_pubkey(output: str, rc: int) -> dict[str, Any]:
    first, _, rest = output.partition("\n")
    state = first.partition("=")[2].strip() or "unknown"
    if state == "present":
        m = re.search(r"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", rest, re.S)
        if m is None:
            return {"state": "unreadable", "error": rest.strip()[-200:]}
        return {"state": "present", "pem": m.group(0) + "\n"}
    return {"state": state}


@dataclass
class NodeCertificate(Operation):
    """``/etc/receptor/tls/<node>.crt`` and ``.key`` for one node."""

    default_category = "certificates"

    node_id: str = ""
    addresses: list[str] = field(default_factory=list)
    key_type: str = "rsa2048"
    days: int = 3650
    renew_within: int = 30
    key_location: str = "node"
    backend: Any = None
    trust_pem: bytes = b""
    cert_path: str = ""
    key_path: str = ""
    owner: str = "awx"
    group: str = "awx"
    force: bool = False

    def __post_init__(self) -> None:
        self.id = self.id or f"cert:{self.cert_path}"
        self.description = self.description or f"certificate {self.cert_path}"

    def facts(self, manager: str) -> list[F.Fact]:
        return [F.file_fact(self.cert_path), F.file_fact(self.key_path, content=False), pubkey_fact(self.key_path)]

    # -- planning ---------------------------------------------------------------
    def reasons(self, facts: dict[str, Any]) -> tuple[list[str], C.CertStatus | None]:
        cert_fact = facts[f"file:{self.cert_path}"]
        key_fact = facts[f"pubkey:{self.key_path}"]
        if cert_fact.get("kind") != "file":
            return ["no certificate on the node"], None
        pem = F.decode_content(cert_fact)
        if pem is None:
            return ["certificate unreadable"], None
        key_pem = key_fact.get("pem", "").encode() or None
        try:
            status = C.inspect_cert(pem, self.trust_pem, key_pem)
        except ValueError as exc:
            return [f"certificate unparsable ({exc})"], None
        if getattr(self.backend, "fixed", False):
            want_key, want_cert = self.backend.issue(self.node_id, self.addresses, self.key_type, self.days)
            out = []
            if C.load_cert(want_cert) != C.load_cert(pem):
                out.append("certificate differs from the bundle's")
            if key_fact.get("state") != "present" or key_pem != C.public_key_pem(C.load_private_key(want_key)):
                out.append("key differs from the bundle's" if key_fact.get("state") == "present" else "no key")
            return out, status
        reasons = status.ok(self.node_id, self.addresses, self.renew_within)
        if key_fact.get("state") == "absent":
            reasons.append("no key on the node")
        if status.key_type != self.key_type:
            reasons.append(f"key type {status.key_type}, want {self.key_type}")
        if self.force and not reasons:
            reasons.append("renewal requested")
        return list(dict.fromkeys(reasons)), status

    def plan(self, facts: dict[str, Any], changed: set[str], manager: str) -> PlanResult:
        reasons, status = self.reasons(facts)
        if not reasons:
            key_fix = self._key_attr_fix(facts)
            if key_fix:
                return Change(self, key_fix[0], key_fix[1])
            assert status is not None
            return NoChange(self, f"valid until {status.not_after:%Y-%m-%d} ({status.days_left:.0f} days), "
                                  "chains to the mesh CA, matches its key")
        where = "key made on the node" if self.key_location == "node" else "key made by meshctl"
        summary = "issue: " + "; ".join(reasons) + f" ({where})"
        if self.key_location == "controller":
            return Change(self, summary, self._controller_commands)
        regenerate = self._needs_new_key(facts, status)
        return Change(self, summary, lambda: self._csr_commands(regenerate), exchange=self._after_csr)

    def _key_attr_fix(self, facts: dict[str, Any]) -> tuple[str, list[Cmd]] | None:
        kf = facts[f"file:{self.key_path}"]
        if kf.get("kind") != "file":
            return None
        notes, cmds = attr_fixes(self.key_path, kf, 0o600, self.owner, self.group)
        return (", ".join(f"key {n}" for n in notes), cmds) if cmds else None

    def _needs_new_key(self, facts: dict[str, Any], status: C.CertStatus | None) -> bool:
        key = facts[f"pubkey:{self.key_path}"]
        if key.get("state") != "present":
            return True
        try:
            have = C.key_type_of_public_pem(key["pem"].encode())
        except ValueError:
            return True
        return have != self.key_type

    # -- applying ----------------------------------------------------------------
    def _files(self, cert_pem: bytes, key_pem: bytes | None) -> list[Cmd]:
        cmds: list[Cmd] = []
        if key_pem is not None:
            cmds += File(path=self.key_path, content=key_pem, mode="0600", owner=self.owner, group=self.group,
                         secret=True, backup=self.backup).write_commands()
        cmds += File(path=self.cert_path, content=cert_pem, mode="0640", owner=self.owner,
                     group=self.group, backup=self.backup).write_commands()
        return cmds

    def _controller_commands(self) -> list[Cmd]:
        key_pem, cert_pem = self.backend.issue(self.node_id, self.addresses, self.key_type, self.days)
        return self._files(cert_pem, key_pem)

    @property
    def new_key_path(self) -> str:
        return self.key_path + ".new"

    def _csr_commands(self, regenerate: bool) -> list[Cmd]:
        # A replacement key is made beside the old one and moved into place only
        # after its certificate is written: the pair on disk always matches.
        key = self.new_key_path if regenerate else self.key_path
        script = C.node_csr_script(key, self.key_type, self.node_id, self.addresses, self.owner, self.group)
        prefix = f"rm -f {shlex.quote(self.new_key_path)}\n" if regenerate else ""
        # A subshell: the script's own `set -eu` and EXIT trap must not replace the
        # apply script's (its trap is what removes the staging and rollback directories).
        return [Cmd(f"(\n{prefix}{script})")]

    def _after_csr(self, output: str) -> list[Cmd]:
        m = _CSR_RE.search(output)
        if m is None:
            raise MeshctlError(f"the node sent no CSR; openssl said: {output.strip()[-500:]}")
        pem = (m.group(0) + "\n").encode()
        try:
            csr = C.load_csr(pem)
        except ValueError as exc:
            raise MeshctlError(f"the node's CSR is unreadable: {exc}") from None
        problems = C.check_csr(csr, self.node_id, self.key_type, self.addresses)
        if problems:
            raise MeshctlError("refusing to sign the node's CSR: " + "; ".join(problems))
        cert_pem = self.backend.sign_csr(pem, self.node_id, self.addresses, self.days)
        q_new, q_key = shlex.quote(self.new_key_path), shlex.quote(self.key_path)
        keep = [Cmd(f"_bk {q_key}")] if self.backup else []
        return self._files(cert_pem, None) + keep + [Cmd(f"if [ -e {q_new} ]; then mv -f {q_new} {q_key}; fi")]
