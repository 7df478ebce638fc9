"""The example backend's own tests, as its author would write them: meshctl.testing's
conformance check, and a mistake in mesh.yml named at its line."""

from __future__ import annotations

import shutil
import subprocess

import meshctl_certbackend_openssl as example
import pytest

from meshctl.plugin import BackendContext, MeshctlError
from meshctl.testing import SEED_TEXT, parse, plugin_manager
from meshctl.testing.backends import assert_conformant, check_certificate_backend

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")


@pytest.fixture
def ca(tmp_path):
    # A CA made by openssl itself: the backend must not depend on meshctl's own CA code.
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:3072", "-nodes", "-days", "30", "-sha256",
                    "-keyout", str(tmp_path / "ca.key"), "-out", str(tmp_path / "ca.crt"),
                    "-subj", "/CN=test Receptor Root CA", "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign"], check=True, capture_output=True)
    (tmp_path / "ca.key").chmod(0o600)
    return tmp_path


def backend(ca, **options):
    registered = plugin_manager(example).cert_backends()["openssl"]
    opts = registered.options_model(ca_cert=str(ca / "ca.crt"), ca_key=str(ca / "ca.key"), **options)
    return registered.factory(opts, BackendContext("test", ca / "state", ca))


@pytest.mark.parametrize("digest", ["sha256", "sha384", "sha512"])
def test_conformant(ca, digest):
    assert_conformant(backend(ca, digest=digest))


@pytest.mark.parametrize("key_type", ["rsa2048", "ecdsa-p256"])
def test_conformant_for_each_key_type(ca, key_type):
    assert check_certificate_backend(backend(ca), key_type=key_type) == []


def test_a_wrong_ca_key_is_caught_by_the_check(ca, tmp_path_factory):
    other = tmp_path_factory.mktemp("other")
    subprocess.run(["openssl", "genrsa", "-out", str(other / "ca.key"), "2048"], check=True, capture_output=True)
    (other / "ca.key").chmod(0o600)
    mixed = backend(ca)
    mixed.ca_key_path = other / "ca.key"  # signs with a key that is not the trusted CA's
    assert any("chain" in p or "raised" in p for p in check_certificate_backend(mixed))


def test_a_typo_in_its_options_is_refused_at_its_line(ca):
    text = SEED_TEXT.replace("backend: file\n  options: {ca_cert: ca/ca.crt, ca_key: ca/ca.key}",
                             f"backend: openssl\n  options: {{ca_crt: {ca}/ca.crt, ca_key: {ca}/ca.key}}")
    assert "backend: openssl" in text
    with pytest.raises(MeshctlError) as err:
        parse(text, plugin_manager(example))
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "ca_crt" in t)
    assert f"mesh.yml:{line}:21: openssl backend option ca_crt: Extra inputs are not permitted" in err.value.render()
