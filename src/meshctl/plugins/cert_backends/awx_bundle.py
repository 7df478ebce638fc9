"""AWX install bundles (``<host>_install_bundle.tar.gz``): read safely, in memory.

Two layouts exist: ``mesh-CA.crt`` / ``work_public_key.pem`` and, before AWX 22.4,
``receptor-ca.crt`` / ``work-public-key.pem`` (the "AWX install bundle" section of the
receptor-mesh reference).
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import os
import re
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import yaml
from cryptography.hazmat.primitives import serialization

from meshctl.plugin import (
    NODEID_OID,
    UsageError,
    inspect_cert,
    load_cert,
    load_certs,
    load_private_key,
    read_bytes,
    shown,
    spki_der,
    utc,
)

Layout = Literal["awx>=23", "awx<23"]
# Member names (below "<host>_install_bundle/") per layout. The "awx<23" names were
# used by AWX 21.7.0 .. 22.3.0 (renamed in 22.4.0); the labels follow the reference.
LAYOUTS: dict[str, dict[str, str]] = {
    "awx>=23": {"ca": "receptor/tls/ca/mesh-CA.crt", "work": "receptor/work_public_key.pem"},
    "awx<23": {"ca": "receptor/tls/ca/receptor-ca.crt", "work": "receptor/work-public-key.pem"},
}
CERT_MEMBER = "receptor/tls/receptor.crt"
KEY_MEMBER = "receptor/tls/receptor.key"
INVENTORY = "inventory.yml"
GROUP_VARS = "group_vars/all.yml"
_USER_PLACEHOLDER = "<username>"  # AWX leaves the SSH user to the person running the play

MAX_MEMBER_BYTES = 1 << 20  # a bundle's files are a few KiB each
MAX_BUNDLE_BYTES = 16 << 20  # compressed, and again uncompressed (gzip bombs)
MAX_MEMBERS = 100


@dataclass(frozen=True)
class AwxBundle:
    """What an AWX install bundle (``<host>_install_bundle.tar.gz``) provisions."""

    path: Path
    layout: Layout
    host: str  # ansible_host: AWX's instance hostname
    user: str | None  # ansible_user; None while it is AWX's "<username>" placeholder
    node_id: str  # the certificate's NodeID otherName, else its CN
    role: Literal["execution", "hop"]  # execution when receptor_work_commands is set
    listener_port: int | None  # None: receptor_listener false
    listener_protocol: str
    peers: list[tuple[str, str]]  # (address, protocol) from receptor_peers
    tls: bool
    verify: bool
    mintls13: bool
    cert_pem: bytes
    key_pem: bytes = field(repr=False)  # secret
    ca_pem: bytes
    work_public_key_pem: bytes | None  # None for hop nodes
    variables: dict[str, Any] = field(repr=False)  # group_vars/all.yml merged with the host's vars


# Receptor node ids as mesh.yml takes them (topology's rule); fullmatch, as "$"
# would accept a trailing newline.
_BUNDLE_NODE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


def _bundle_error(path: Path, message: str) -> ValueError:
    return ValueError(f"{shown(path.name)}: {message}")


def _bundle_files(path: Path, raw: bytes | None = None) -> dict[str, bytes]:
    """Regular files of the tarball (the file at ``path``, or ``raw`` downloaded under
    that name) by normalised name, read in memory with every bound checked; nothing is
    extracted to disk."""
    if raw is None:
        try:
            # The safe reader: a FIFO reports size 0 and would then block a plain read.
            raw = read_bytes(path, "install bundle", MAX_BUNDLE_BYTES)
        except UsageError as exc:
            raise _bundle_error(path, str(exc).removeprefix(shown(path) + ": ")) from None
    elif len(raw) > MAX_BUNDLE_BYTES:
        raise _bundle_error(path, f"more than {MAX_BUNDLE_BYTES} bytes")
    if raw[:2] == b"\x1f\x8b":
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as gz:
                raw = gz.read(MAX_BUNDLE_BYTES + 1)
        except (OSError, EOFError, zlib.error) as exc:
            raise _bundle_error(path, f"not a valid gzip file ({exc})") from None
        if len(raw) > MAX_BUNDLE_BYTES:
            raise _bundle_error(path, f"uncompresses to more than {MAX_BUNDLE_BYTES} bytes")
    files: dict[str, bytes] = {}
    data_filter = getattr(tarfile, "data_filter", None)  # 3.11.4+
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            members = tar.getmembers()
            if len(members) > MAX_MEMBERS:
                raise _bundle_error(path, f"{len(members)} members, more than {MAX_MEMBERS}")
            for member in members:
                name = member.name
                parts = PurePosixPath(name).parts
                if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
                    raise _bundle_error(path, f"member {name!r} has an absolute path")
                if ".." in parts or ".." in name.split("\\"):
                    raise _bundle_error(path, f"member {name!r} climbs out of the bundle with '..'")
                if member.issym() or member.islnk():
                    raise _bundle_error(path, f"member {name!r} is a link")
                if not (member.isfile() or member.isdir()):
                    raise _bundle_error(path, f"member {name!r} is not a regular file")
                if data_filter is not None:
                    # The "data" extraction filter's verdict, without extracting anything.
                    try:
                        data_filter(member, "/nonexistent/meshctl-bundle")
                    except tarfile.FilterError as exc:
                        raise _bundle_error(path, f"member {name!r} refused: {exc}") from None
                if member.isdir():
                    continue
                if member.size > MAX_MEMBER_BYTES:
                    raise _bundle_error(path, f"member {name!r} is {member.size} bytes (limit {MAX_MEMBER_BYTES})")
                key = "/".join(p for p in parts if p != ".")
                if key in files:
                    raise _bundle_error(path, f"member {name!r} appears twice")
                handle = tar.extractfile(member)
                files[key] = handle.read(MAX_MEMBER_BYTES + 1) if handle else b""
    except tarfile.TarError as exc:
        raise _bundle_error(path, f"not a tar archive ({exc})") from None
    return files


def _strip_root(files: dict[str, bytes]) -> tuple[str, dict[str, bytes]]:
    # AWX puts everything below "<host>_install_bundle/"; tolerate a re-packed bundle without it.
    tops = {name.split("/", 1)[0] for name in files}
    if len(tops) == 1 and all("/" in name for name in files):
        root = tops.pop()
        return root, {name.split("/", 1)[1]: data for name, data in files.items()}
    return "", files


def _yaml(path: Path, member: str, data: bytes) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(data.decode("utf-8")) or {}
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise _bundle_error(path, f"{member} is not valid YAML ({exc})") from None
    if not isinstance(loaded, dict):
        raise _bundle_error(path, f"{member} is not a YAML mapping")
    return loaded


def _port(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 < value < 65536 else None
    if isinstance(value, str) and value.strip().isdigit():
        return _port(int(value))
    return None  # e.g. "None" rendered by an old AWX for a node without a listener


def awx_bundle_cert_problems(cert_pem: bytes, ca_pem: bytes, ca_member: str,
                             now: dt.datetime | None = None) -> list[str]:
    """Why receptor would refuse the bundle's certificate: outside its validity, no
    NodeID otherName (receptor exits "nodeID=... not found"), not signed by the CA the
    bundle ships (peers would refuse the TLS handshake). Empty when none of these."""
    now = utc(now)
    status = inspect_cert(cert_pem, ca_pem, now=now)
    out = []
    if now > status.not_after:
        out.append(f"{CERT_MEMBER} expired on {status.not_after:%Y-%m-%d %H:%M} UTC: download a new bundle")
    elif now < status.not_before:
        out.append(f"{CERT_MEMBER} is not valid before {status.not_before:%Y-%m-%d %H:%M} UTC "
                   "(check this machine's clock, or AWX's)")
    if not status.node_ids:
        out.append(f"{CERT_MEMBER} has no Receptor NodeID otherName ({NODEID_OID}) in its subjectAltName")
    if status.chain_problems:
        out.append(f"{CERT_MEMBER} does not chain to {ca_member}: " + "; ".join(status.chain_problems))
    return out


def read_awx_bundle(path: str | os.PathLike[str], now: dt.datetime | None = None,
                    data: bytes | None = None) -> AwxBundle:
    """Read an AWX install bundle safely (both layouts): the file at ``path``, or
    ``data`` (a download, named ``path`` in messages). ValueError naming the bundle and
    the member for anything broken, missing, unsafe or oversized, and for a certificate
    receptor would refuse (see :func:`awx_bundle_cert_problems`; ``now`` for its validity)."""
    path = Path(path)
    root, files = _strip_root(_bundle_files(path, data))
    prefix = f"{root}/" if root else ""

    def need(member: str) -> bytes:
        if member not in files:
            raise _bundle_error(path, f"missing member {prefix}{member}")
        return files[member]

    layout: Layout
    if LAYOUTS["awx>=23"]["ca"] in files:
        layout = "awx>=23"
    elif LAYOUTS["awx<23"]["ca"] in files:
        layout = "awx<23"
    else:
        raise _bundle_error(
            path, f"missing member {prefix}{LAYOUTS['awx>=23']['ca']} "
                  f"(or {LAYOUTS['awx<23']['ca']} before AWX 22.4)"
        )
    names = LAYOUTS[layout]
    cert_pem, key_pem, ca_pem = need(CERT_MEMBER), need(KEY_MEMBER), need(names["ca"])
    inventory = _yaml(path, INVENTORY, need(INVENTORY))
    group_vars = _yaml(path, GROUP_VARS, need(GROUP_VARS))

    hosts = (inventory.get("all") or {}).get("hosts") if isinstance(inventory.get("all"), dict) else None
    if not isinstance(hosts, dict) or not hosts:
        raise _bundle_error(path, f"{INVENTORY} has no host under all.hosts")
    host_vars = next(iter(hosts.values())) or {}
    if not isinstance(host_vars, dict):
        raise _bundle_error(path, f"{INVENTORY}: the host's variables are not a mapping")
    variables = {**group_vars, **host_vars}  # host vars win, as in Ansible

    try:
        cert = load_cert(cert_pem)
    except ValueError as exc:
        raise _bundle_error(path, f"{CERT_MEMBER} is not a PEM certificate ({exc})") from None
    try:
        key = load_private_key(key_pem)
    except (ValueError, TypeError) as exc:
        raise _bundle_error(path, f"{KEY_MEMBER} is not an unencrypted PEM key ({exc})") from None
    if spki_der(key) != spki_der(cert):
        raise _bundle_error(path, f"{KEY_MEMBER} is not the key of {CERT_MEMBER}")
    try:
        load_certs(ca_pem)
    except ValueError as exc:
        raise _bundle_error(path, f"{names['ca']} is not a PEM certificate ({exc})") from None

    role: Literal["execution", "hop"] = "execution" if variables.get("receptor_work_commands") else "hop"
    work_pem: bytes | None = None
    if role == "execution":
        work_pem = need(names["work"])
        try:
            serialization.load_pem_public_key(work_pem)
        except (ValueError, TypeError) as exc:
            raise _bundle_error(path, f"{names['work']} is not a PEM public key ({exc})") from None

    problems = awx_bundle_cert_problems(cert_pem, ca_pem, names["ca"], now)
    if problems:
        raise _bundle_error(path, "; ".join(problems))
    node_id = inspect_cert(cert_pem).node_ids[0]
    if not _BUNDLE_NODE_ID_RE.fullmatch(node_id):
        raise _bundle_error(path, f"{CERT_MEMBER}: NodeID {node_id!r} is not a valid receptor node id "
                                  "(letters, digits, '.', '_', '@', '-'; at most 64 characters)")

    peers: list[tuple[str, str]] = []
    for i, peer in enumerate(variables.get("receptor_peers") or []):
        if not isinstance(peer, dict) or not isinstance(peer.get("address"), str):
            raise _bundle_error(path, f"{GROUP_VARS}: receptor_peers[{i}] has no address")
        peers.append((peer["address"], str(peer.get("protocol") or "tcp")))

    listener = variables.get("receptor_listener", True) is not False
    port = variables.get("receptor_port", variables.get("receptor_listener_port"))
    user = host_vars.get("ansible_user")
    host = host_vars.get("ansible_host") or root.removesuffix("_install_bundle")
    if not host:
        raise _bundle_error(path, f"{INVENTORY} has no ansible_host")
    return AwxBundle(
        path=path,
        layout=layout,
        host=str(host),
        user=None if user in (None, _USER_PLACEHOLDER) else str(user),
        node_id=node_id,
        role=role,
        listener_port=_port(port) if listener else None,
        listener_protocol=str(variables.get("receptor_protocol") or "tcp"),
        peers=peers,
        tls=variables.get("receptor_tls", True) is not False,
        verify=variables.get("receptor_verify", True) is not False,
        mintls13=variables.get("receptor_mintls13", False) is True,
        cert_pem=cert_pem,
        key_pem=key_pem,
        ca_pem=ca_pem,
        work_public_key_pem=work_pem,
        variables=variables,
    )


# The files AWX renders (awx/api/templates/instance_install_bundle/, AWX 24 and 22.3.0),
