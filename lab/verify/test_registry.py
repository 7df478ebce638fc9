"""The lab's private registry (own CA, htpasswd auth) and what meshctl's registry
support put on execution nodes so that awx can pull from it."""

from __future__ import annotations

import json

from conftest import INV, connect


def test_registry_trust_and_credentials_for_awx(xhost):
    name = INV["registry"]["name"]
    ca = xhost.file(f"/etc/containers/certs.d/{name}/ca.crt")
    assert ca.exists and ca.mode == 0o644
    with open(INV["registry"]["ca"]) as fh:
        assert ca.content_string == fh.read()
    auth = xhost.file("/home/awx/.config/containers/auth.json")
    assert auth.exists and (auth.user, auth.mode) == ("awx", 0o600)
    data = json.loads(auth.content_string)
    assert list(data["auths"]) == [name]


def test_ee_prepulled_for_awx(xhost):
    assert xhost.run(f"runuser -l awx -c 'podman image exists {INV['registry']['ee']}'").rc == 0


def test_registry_requires_authentication_and_its_ca():
    # A client without the lab CA cannot even talk to it; with the CA it must log in.
    host = connect("exec01")
    probe = (
        "python3 - <<'EOF'\n"
        "import ssl, urllib.request, urllib.error\n"
        "for cafile in (None, '/etc/containers/certs.d/{name}/ca.crt'):\n"
        "    ctx = ssl.create_default_context(cafile=cafile)\n"
        "    try:\n"
        "        urllib.request.urlopen('https://{name}/v2/', context=ctx, timeout=5)\n"
        "        print('200')\n"
        "    except urllib.error.HTTPError as e:\n"
        "        print(e.code)\n"
        "    except urllib.error.URLError as e:\n"
        "        print('verify-failed' if 'CERTIFICATE_VERIFY_FAILED' in str(e.reason) else e.reason)\n"
        "EOF"
    ).format(name=INV["registry"]["name"])
    assert host.check_output(probe).split() == ["verify-failed", "401"]
