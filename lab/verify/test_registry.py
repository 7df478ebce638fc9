"""The lab's private registry: TLS with its own CA and htpasswd auth, reachable
from execution nodes on ctl."""

from __future__ import annotations

from pathlib import Path

from conftest import INV, connect

GET = (
    "python3 - <<'EOF'\n"
    "import ssl, sys, urllib.request, urllib.error\n"
    "ctx = ssl.create_default_context()\n"
    "try:\n"
    "    urllib.request.urlopen('https://{hp}/v2/', context=ctx, timeout=5)\n"
    "    print('status 200')\n"
    "except urllib.error.HTTPError as e:\n"
    "    print('status', e.code)\n"
    "except urllib.error.URLError as e:\n"
    "    print('error', e.reason)\n"
    "EOF"
)


def test_registry_needs_its_ca_from_an_execution_node():
    out = connect("exec01").check_output(GET.format(hp=INV["registry"]["hostport"]))
    # The node does not trust the lab CA (meshctl's registry support installs it).
    assert "CERTIFICATE_VERIFY_FAILED" in out, out


def test_registry_requires_authentication():
    host = connect("exec01")
    ca = Path(INV["registry"]["ca"]).read_text()
    host.run("mkdir -p /tmp/regtest")
    # Put the CA on the node for this probe only (then remove it).
    r = host.run(f"cat > /tmp/regtest/ca.crt <<'EOF'\n{ca}\nEOF")
    assert r.rc == 0
    probe = GET.format(hp=INV["registry"]["hostport"]).replace(
        "ssl.create_default_context()", "ssl.create_default_context(cafile='/tmp/regtest/ca.crt')")
    try:
        assert host.check_output(probe) == "status 401"
    finally:
        host.run("rm -rf /tmp/regtest")
