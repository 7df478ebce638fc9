"""meshctl.testing.backends: the conformance check passes the built-in backends (and the
openssl example, in test_certbackend_openssl.py) and fails broken ones with the problem."""

from __future__ import annotations

import broken_backends as BB
import pytest
from test_cert_backend_checks import PROBLEMS

from meshctl.core import pki as C
from meshctl.core.types import BackendContext
from meshctl.plugins.cert_backends.backends import FileBackend, FileOptions, SelfSigned
from meshctl.testing.backends import assert_conformant, check_certificate_backend


def test_the_built_in_backends_are_conformant(tmp_path):
    ctx = BackendContext("conformance", tmp_path / "state", tmp_path)
    assert_conformant(SelfSigned(None, ctx))
    key, cert = C.create_ca("file CA", "ecdsa-p256", 30)
    (tmp_path / "ca.key").write_bytes(C.key_to_pem(key))
    (tmp_path / "ca.key").chmod(0o600)
    (tmp_path / "ca.crt").write_bytes(BB.pem(cert))
    backend = FileBackend(FileOptions(ca_cert="ca.crt", ca_key="ca.key"), ctx)
    for key_type in C.KEY_TYPES:
        assert check_certificate_backend(backend, key_type=key_type, node_id="n1", addresses=["n1.example.com"]) == []


@pytest.mark.parametrize("fault", sorted(PROBLEMS))
def test_a_broken_backend_fails_with_the_problem(fault):
    problems = check_certificate_backend(BB.Broken(BB.Options(fault=fault), None), node_id="e1",
                                         addresses=["e1.example.com"], key_type="ecdsa-p256")
    assert [p.split(":", 1)[0] for p in problems] == ["issue()", "sign_csr()"], problems
    assert all(PROBLEMS[fault] in p for p in problems), problems


@pytest.mark.parametrize("fault,expect", [
    ("raise-issue", ["issue() raised RuntimeError: issue is broken"]),
    ("raise-sign_csr", ["sign_csr() raised RuntimeError: sign_csr is broken"]),
    ("raise-trust_bundle", ["trust_bundle() raised KeyError: 'ca'"]),
    ("str-cert", ["issue() must return (key PEM bytes, certificate PEM bytes)", "sign_csr(): it is a str, not PEM bytes"]),
])
def test_exceptions_and_wrong_types_are_problems(fault, expect):
    assert check_certificate_backend(BB.Broken(BB.Options(fault=fault), None), key_type="ecdsa-p256") == expect


def test_protocol_gaps_and_a_backend_without_csrs():
    class Half:
        supports_csr = "yes"

        def trust_bundle(self):
            return b""

    assert check_certificate_backend(Half()) == [
        "lacks supports_csr (a bool: True when it signs CSRs made on the node)", "lacks sign_csr()", "lacks issue()"]

    class NoCsr(BB.Broken):
        supports_csr = False

        def sign_csr(self, *args):
            raise AssertionError("a backend without supports_csr is never asked to sign")

    assert check_certificate_backend(NoCsr(BB.Options(), None), key_type="ecdsa-p256") == []


def test_assert_conformant_lists_every_problem():
    with pytest.raises(AssertionError) as info:
        assert_conformant(BB.Broken(BB.Options(fault="other-ca"), None), key_type="ecdsa-p256")
    lines = str(info.value).splitlines()
    assert lines[0] == "certificate backend is not conformant:"
    assert [ln[:12] for ln in lines[1:]] == ["- issue(): i", "- sign_csr()"]


def test_the_key_type_asked_for_and_the_names_are_checked():
    class OneKeyType(BB.Broken):
        def issue(self, node_id, addresses, key_type, days):
            return super().issue(node_id, addresses, "ecdsa-p256", days)

    (problem,) = check_certificate_backend(OneKeyType(BB.Options(), None), key_type="ecdsa-p384",
                                           addresses=["exec01.example.com"])
    assert problem == "issue(): its key is ecdsa-p256, not the ecdsa-p384 asked for: make a key of the key_type given"


def test_the_backend_in_the_docs_is_conformant_and_uses_only_the_public_surface(tmp_path):
    """docs/certificate-backends.md shows a complete backend: it must work as shown."""
    import ast
    import re
    import types
    from pathlib import Path

    doc = (Path(__file__).resolve().parent.parent / "docs" / "certificate-backends.md").read_text()
    (source,) = re.findall(r'```python title="meshctl_cafile.py"\n(.*?)```', doc, re.S)
    used = {n.module for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom)}
    assert sorted(m for m in used if m.startswith("meshctl")) == ["meshctl.plugin"]
    module = types.ModuleType("meshctl_cafile")
    exec(compile(source, "meshctl_cafile.py", "exec"), module.__dict__)
    key, cert = C.create_ca("docs CA", "ecdsa-p256", 30)
    (tmp_path / "ca.key").write_bytes(C.key_to_pem(key))
    (tmp_path / "ca.crt").write_bytes(BB.pem(cert))
    backend = module.CaFileBackend(module.CaFileOptions(ca_cert="ca.crt", ca_key="ca.key"),
                                   BackendContext("test", tmp_path / "state", tmp_path))
    assert_conformant(backend)
    assert check_certificate_backend(backend, key_type="ecdsa-p384") == []
