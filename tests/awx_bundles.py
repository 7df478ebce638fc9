"""A maker of AWX install bundles for tests and demos (``make_awx_bundle``): the files
AWX renders for each layout, with a node certificate made the way AWX makes it.

Tests import it as ``from awx_bundles import make_awx_bundle`` (tests/ is on sys.path).
"""

from __future__ import annotations

import datetime as dt
import io
import os
import tarfile
import time
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from meshctl.core.pki import KeyType, generate_key, parse_address, work_signing_keypair
from meshctl.core.pki.keys import hash_for, utc
from meshctl.core.pki.names import NODEID, cn_name, der_utf8
from meshctl.plugins.cert_backends.awx_bundle import (
    CERT_MEMBER,
    GROUP_VARS,
    INVENTORY,
    KEY_MEMBER,
    LAYOUTS,
    Layout,
)

# as they come out of the template engine.
_PLAYBOOK_NEW = """\
---
- hosts: all
  become: yes
  tasks:
    - name: Create the receptor group
      group:
        name: "{{ receptor_group }}"
        state: present
    - name: Create the receptor user
      user:
        name: "{{ receptor_user }}"
        shell: /bin/bash
%(podman)s    - import_role:
        name: ansible.receptor.setup
"""
_PODMAN_ROLE = "    - import_role:\n        name: ansible.receptor.podman\n"
_PLAYBOOK_OLD = """
---
- hosts: all
  become: yes
  tasks:
    - name: Create the receptor user
      user:
        name: "{{ receptor_user }}"
        shell: /bin/bash
    - name: Enable Copr repo for Receptor
      command: dnf copr enable ansible-awx/receptor -y
    - import_role:
        name: ansible.receptor.podman
    - import_role:
        name: ansible.receptor.setup
    - name: Install ansible-runner
      pip:
        name: ansible-runner
        executable: pip3.9
"""
_INVENTORY_TEXT = """\
---
all:
  hosts:
    remote-execution:
      ansible_host: %(host)s
      ansible_user: %(user)s
      ansible_ssh_private_key_file: ~/.ssh/id_rsa
"""
_REQUIREMENTS = {
    "awx>=23": "---\ncollections:\n  - name: ansible.receptor\n    version: 2.0.3\n",
    "awx<23": "---\ncollections:\n  - name: ansible.receptor\n    version: 1.1.0\n",
}
_WORK_COMMANDS = """\
receptor_work_commands:
  ansible-runner:
    command: ansible-runner
    params: worker
    allowruntimeparams: true
    verifysignature: true
"""
_PODMAN_VARS = 'podman_user: "{{ receptor_user }}"\npodman_group: "{{ receptor_group }}"\n'


def _group_vars_new(role: str, listener_port: int | None, protocol: str, peers: Sequence[tuple[str, str]]) -> str:
    out = "receptor_user: awx\nreceptor_group: awx\nreceptor_verify: true\nreceptor_tls: true\nreceptor_mintls13: false\n"
    if role == "execution":
        out += _WORK_COMMANDS + "additional_python_packages:\n  - ansible-runner\n"
    out += (f"custom_worksign_public_keyfile: {LAYOUTS['awx>=23']['work']}\n"
            f"custom_tls_certfile: {CERT_MEMBER}\ncustom_tls_keyfile: {KEY_MEMBER}\n"
            f"custom_ca_certfile: {LAYOUTS['awx>=23']['ca']}\n")
    if listener_port:
        out += f"receptor_protocol: {protocol}\nreceptor_listener: true\nreceptor_port: {listener_port}\n"
    else:
        out += "receptor_listener: false\n"
    if peers:
        out += "receptor_peers:\n" + "".join(
            f"  - address: {address}\n    protocol: {proto}\n" for address, proto in peers
        )
    return out + _PODMAN_VARS


def _group_vars_old(listener_port: int | None) -> str:
    return (
        "receptor_user: awx\nreceptor_group: awx\nreceptor_verify: true\nreceptor_tls: true\n"
        "receptor_mintls13: false\n" + _WORK_COMMANDS
        + f"custom_worksign_public_keyfile: {LAYOUTS['awx<23']['work']}\n"
        f"custom_tls_certfile: {CERT_MEMBER}\ncustom_tls_keyfile: {KEY_MEMBER}\n"
        f"custom_ca_certfile: {LAYOUTS['awx<23']['ca']}\n"
        f"receptor_protocol: 'tcp'\nreceptor_listener: true\nreceptor_port: {listener_port}\n"
        "receptor_dependencies:\n  - python39-pip\n\n" + _PODMAN_VARS + "\n"
    )


@lru_cache(maxsize=1)
def _stand_in_work_public_key() -> bytes:
    # Only the public half is kept; one per process keeps test bundles cheap (RSA 4096).
    return work_signing_keypair()[1]


def _awx_node_cert(
    ca_key: CertificateIssuerPrivateKeyTypes, ca_cert: x509.Certificate, host: str, node_id: str,
    key_type: KeyType, days: int, not_before: dt.datetime | None = None, with_node_id: bool = True,
) -> tuple[bytes, bytes]:
    """Key and certificate as AWX's generate_receptor_tls makes them: CN, SAN with DNS
    (or IP), NodeID otherName, no KU/EKU/AKI, valid from now, traditional key PEM."""
    key = generate_key(key_type)
    host_name = parse_address(host)
    names: list[x509.GeneralName] = []
    if isinstance(host_name, x509.DNSName):
        names.append(host_name)
    if with_node_id:
        names.append(x509.OtherName(NODEID, der_utf8(node_id)))
    if isinstance(host_name, x509.IPAddress):
        names.append(host_name)
    now = utc(not_before)
    cert = (
        x509.CertificateBuilder()
        .subject_name(cn_name(node_id))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hash_for(ca_key))
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def make_awx_bundle(
    path: str | os.PathLike[str],
    *,
    host: str,
    node_id: str,
    role: Literal["execution", "hop"],
    ca_key: CertificateIssuerPrivateKeyTypes,
    ca_cert: x509.Certificate,
    layout: Layout = "awx>=23",
    peers: Sequence[tuple[str, str]] = (),
    listener_port: int | None = 27199,
    listener_protocol: str = "tcp",
    user: str = "cloud-user",
    key_type: KeyType = "rsa2048",
    days: int = 3650,
    work_public_key_pem: bytes | None = None,
    not_before: dt.datetime | None = None,
    with_node_id: bool = True,
    signer: tuple[CertificateIssuerPrivateKeyTypes, x509.Certificate] | None = None,
) -> Path:
    """Write an AWX-format install bundle (for tests and demos) and return its path.

    ``path`` is the file, or a directory to hold ``<host>_install_bundle.tar.gz``. The
    files mirror what AWX renders for ``layout``; the node certificate is made like
    AWX makes it. ``work_public_key_pem`` defaults to a throwaway RSA 4096 public key.
    The file is created mode 0600: it holds the node's private key.

    For bundles AWX would not make (tests of the checks): ``not_before`` (default now)
    starts the validity, ``with_node_id=False`` leaves the NodeID otherName out, and
    ``signer`` (key, certificate) signs the node certificate instead of the CA shipped.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r} (awx>=23 or awx<23)")
    if role not in ("execution", "hop"):
        raise ValueError(f"AWX makes install bundles for execution and hop nodes only, not {role!r}")
    if layout == "awx<23" and (role == "hop" or peers or not listener_port):
        raise ValueError("AWX < 23 bundles exist only for execution nodes with a listener and no peers")
    out = Path(path)
    if out.is_dir():
        out = out / f"{host}_install_bundle.tar.gz"
    root = f"{host}_install_bundle"
    names = LAYOUTS[layout]
    sign_key, sign_cert = signer or (ca_key, ca_cert)
    key_pem, cert_pem = _awx_node_cert(sign_key, sign_cert, host, node_id, key_type, days, not_before, with_node_id)
    if layout == "awx>=23":
        playbook = _PLAYBOOK_NEW % {"podman": _PODMAN_ROLE if role == "execution" else ""}
        group_vars = _group_vars_new(role, listener_port, listener_protocol, peers)
    else:
        playbook, group_vars = _PLAYBOOK_OLD, _group_vars_old(listener_port)
    members = [  # AWX's order
        (names["ca"], ca_cert.public_bytes(serialization.Encoding.PEM)),
        (names["work"], work_public_key_pem or _stand_in_work_public_key()),
        (KEY_MEMBER, key_pem),
        (CERT_MEMBER, cert_pem),
        ("install_receptor.yml", playbook.encode()),
        (INVENTORY, (_INVENTORY_TEXT % {"host": host, "user": user}).encode()),
        (GROUP_VARS, group_vars.encode()),
        ("requirements.yml", _REQUIREMENTS[layout].encode()),
    ]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(f"{root}/{name}")
            info.size, info.mtime = len(data), int(time.time())
            tar.addfile(info, io.BytesIO(data))
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(buf.getvalue())
    return out
