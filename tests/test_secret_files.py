"""Secret and input files named by mesh.yml: never a hang on a FIFO, never an
unbounded read, an error at validate for a directory or FIFO, a warning naming
the file, its mode and the fix when group or others can read a secret."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from awx_bundles import make_awx_bundle
from seed import edge
from test_hostile_input import meshctl, one_line_error

from meshctl.core import pki as C
from meshctl.core.errors import MeshctlError, TopologyError
from meshctl.core.files import secret_file_problem
from meshctl.core.topology import parse_topology


def mesh(top: str = "", node: str = "") -> str:
    """The seed with top-level sections ``top`` and keys ``node`` on exec01."""
    exec01 = "    peers: [hop01.example.com]\n"
    return edge({exec01: exec01 + node}, sections=top)


def mesh_file(tmp_path: Path, top: str = "", node: str = "") -> Path:
    p = tmp_path / "mesh.yml"
    p.write_text(mesh(top, node))
    return p


def diagnostics(path: Path, plugins) -> tuple[list[str], list[str]]:
    try:
        topo = parse_topology(path.read_text(), str(path), plugins)
    except TopologyError as exc:
        diags = exc.diagnostics
    else:
        diags = topo.warnings
    return ([str(d) for d in diags if d.severity == "error"], [str(d) for d in diags if d.severity == "warning"])


def secret(path: Path, data: bytes = b"x", mode: int = 0o600) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


@pytest.fixture(scope="module")
def ca_pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("ca")
    key, cert = C.create_ca("secret CA", "ecdsa-p256")
    from cryptography.hazmat.primitives import serialization

    secret(d / "ca.key", C.key_to_pem(key))
    (d / "ca.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert, d


def registry(path: str, kind: str = "password_file") -> str:
    if kind == "password_file":
        return f"registries:\n  - host: r.example.com\n    username: u\n    password_file: {path}\n"
    return f"registries:\n  - host: r.example.com\n    ca_file: {path}\n"


def work_signing(public: str, private: str | None = None) -> str:
    text = f"work_signing:\n  public_key: {public}\n"
    return text + (f"  private_key: {private}\n" if private else "")


def file_backend(ca_dir: Path, key: str | None = None) -> str:
    return (f"certificates:\n  backend: file\n  options: {{ca_cert: {ca_dir / 'ca.crt'}, "
            f"ca_key: {key or ca_dir / 'ca.key'}}}\n")


def bundle_node(path: str) -> str:
    return f"    certificates:\n      backend: awx-bundle\n      options: {{bundle: {path}}}\n"


# -- the helper ---------------------------------------------------------------------


def test_secret_file_problem(tmp_path):
    assert secret_file_problem(secret(tmp_path / "ok")) is None
    assert secret_file_problem(tmp_path / "missing") is None
    sev, msg = secret_file_problem(secret(tmp_path / "open", mode=0o640), "CA key")
    assert sev == "warning"
    assert msg == f"{tmp_path / 'open'}: the CA key is open to group or others (mode 0640): chmod 600 {tmp_path / 'open'}"
    assert secret_file_problem(tmp_path) == ("error", f"{tmp_path}: the secret file is a directory, not a regular file")
    os.mkfifo(tmp_path / "pipe")
    assert secret_file_problem(tmp_path / "pipe")[1].endswith("is a FIFO, not a regular file")


# -- a FIFO is refused at once, through the real CLI ------------------------------------


@pytest.fixture
def fifo(tmp_path):
    p = tmp_path / "pipe"
    os.mkfifo(p)
    return p


def test_fifo_password_file(tmp_path, fifo):
    r = meshctl("validate", "-f", str(mesh_file(tmp_path, registry(str(fifo)))), timeout=30)
    assert f"{fifo}: the registry password_file is a FIFO, not a regular file" in one_line_error(r)


def test_fifo_registry_ca_file(tmp_path, fifo):
    r = meshctl("validate", "-f", str(mesh_file(tmp_path, registry(str(fifo), "ca_file"))), timeout=30)
    assert f"{fifo}: the registry ca_file is a FIFO, not a regular file" in one_line_error(r)


def test_fifo_work_signing_public_key(tmp_path, fifo):
    r = meshctl("validate", "-f", str(mesh_file(tmp_path, work_signing(str(fifo)))), timeout=30)
    assert f"{fifo}: the work_signing public_key is a FIFO, not a regular file" in one_line_error(r)


def test_fifo_awx_bundle(tmp_path, fifo):
    r = meshctl("validate", "-f", str(mesh_file(tmp_path, node=bundle_node(str(fifo)))), timeout=30)
    assert f"{fifo}: the install bundle is a FIFO, not a regular file" in one_line_error(r)
    r = meshctl("import", "awx-bundle", str(fifo), timeout=30)
    assert f"{fifo.name}: the install bundle is a FIFO, not a regular file" in one_line_error(r)


def _in_thread(fn, timeout: float = 20):
    box: dict = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "blocked reading a FIFO"
    return box


def test_password_file_read_refuses_fifo_and_huge_files(tmp_path, fifo, plugins):
    from meshctl.plugins import registry_auth as RA

    pw = secret(tmp_path / "pw")
    for path, message in ((fifo, "is a FIFO, not a regular file"), ("/dev/zero", "is a character device")):
        topo = parse_topology(mesh(registry(str(pw))), str(tmp_path / "m.yml"), plugins)
        reg = RA.registries(topo)[0].model_copy(update={"password_file": str(path)})
        box = _in_thread(lambda reg=reg, topo=topo: RA.meshctl_registry_credentials(reg, topo))
        assert isinstance(box.get("error"), MeshctlError) and message in str(box["error"])
    sparse = tmp_path / "sparse"
    with open(sparse, "wb") as fh:
        fh.truncate(4 << 30)
    reg = reg.model_copy(update={"password_file": str(sparse)})
    box = _in_thread(lambda: RA.meshctl_registry_credentials(reg, topo))
    assert "the registry password_file is larger than 1 MiB" in str(box["error"])


def test_dev_zero_as_secret_files(tmp_path, plugins):
    errors, _ = diagnostics(mesh_file(tmp_path, registry("/dev/zero")), plugins)
    assert any("/dev/zero: the registry password_file is a character device" in e for e in errors), errors
    errors, _ = diagnostics(mesh_file(tmp_path, work_signing("/dev/zero")), plugins)
    assert any("/dev/zero: the work_signing public_key is a character device" in e for e in errors), errors


# -- directories are errors, open modes warnings ------------------------------------------


def _check_kind(tmp_path, plugins, make_top, what: str, target: Path, node: bool = False):
    """``target`` as a directory: an error; as a 0644 file: a warning naming it and the fix."""
    def run(path: Path):
        text = make_top(str(path))
        return diagnostics(mesh_file(tmp_path, "" if node else text, text if node else ""), plugins)

    d = tmp_path / "adir"
    d.mkdir(exist_ok=True)
    errors, _ = run(d)
    assert any(f"{d}: the {what} is a directory, not a regular file" in e for e in errors), errors
    target.chmod(0o644)
    _, warnings = run(target)
    want = f"{target}: the {what} is open to group or others (mode 0644): chmod 600 {target}"
    assert any(want in w for w in warnings), warnings
    target.chmod(0o600)
    errors, warnings = run(target)
    assert not any(what in m for m in errors + warnings), errors + warnings


def test_password_file_modes(tmp_path, plugins):
    _check_kind(tmp_path, plugins, registry, "registry password_file", secret(tmp_path / "pw", b"s3cret\n"))


def test_file_backend_ca_key_modes(tmp_path, plugins, ca_pair):
    _key, _cert, d = ca_pair
    _check_kind(tmp_path, plugins, lambda p: file_backend(d, p), "CA key", d / "ca.key")


def test_work_signing_private_key_modes(tmp_path, plugins):
    private, public = C.work_signing_keypair()
    pub = tmp_path / "work.pub"
    pub.write_bytes(public)
    _check_kind(tmp_path, plugins, lambda p: work_signing(str(pub), p), "work_signing private_key",
                secret(tmp_path / "work.key", private))


def test_awx_bundle_modes(tmp_path, plugins, ca_pair):
    key, cert, _d = ca_pair
    path = make_awx_bundle(tmp_path, host="exec01.example.com", node_id="exec01.example.com", role="execution",
                           ca_key=key, ca_cert=cert, work_public_key_pem=C.work_signing_keypair()[1])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    _check_kind(tmp_path, plugins, bundle_node, "install bundle", path, node=True)
