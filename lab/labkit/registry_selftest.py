"""End-to-end check of labkit.registry: `PYTHONPATH=lab python -m labkit.registry_selftest`.

Builds the base and registry images, starts a registry host and a client host on one network,
and proves: /v2/ answers 401 without and 200 with credentials (from the machine); a tiny local
image pushes with a temporary --authfile and --cert-dir (and fails without either); from the
client host, python3 gets 401/200 with the CA, sees the pushed tag, and fails certificate
verification without the CA. Everything it creates is named with --prefix and removed at the
end, also on failure. The registry password is never printed; the logs are checked for it.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from labkit.errors import LabError
from labkit.hostprep import podman, prepare_host, run
from labkit.hosts import (
    assert_lab_address,
    create_network,
    free_subnets,
    remove_hosts,
    remove_network,
    remove_prefixed,
    ssh_keypair,
    start_host,
)
from labkit.image import build_base_image, image_status
from labkit.registry import (
    RegistryInfo,
    build_registry_image,
    http_json,
    push_image,
    registry_check,
    registry_image_status,
    remove_registry,
    start_registry,
)
from labkit.selftest import Timings, check

DEFAULT_WORKDIR = Path(__file__).resolve().parents[1] / ".work" / "registry-selftest"
REPO, TAG = "lab/tiny", "v1"

# Runs inside the client host: argv = base URL, CA path, user, repo; the password on stdin.
CLIENT_PROBE = r"""
import base64, json, ssl, sys, urllib.error, urllib.request
base, ca, user, repo = sys.argv[1:5]
password = sys.stdin.readline().rstrip("\n")
auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
opener = lambda ctx: urllib.request.build_opener(
    urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx))
def get(path, ctx, with_auth):
    req = urllib.request.Request(base + path)
    if with_auth:
        req.add_header("Authorization", auth)
    try:
        with opener(ctx).open(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except urllib.error.URLError as exc:
        return type(exc.reason).__name__ + ": " + str(exc.reason), None
with_ca = ssl.create_default_context(cafile=ca)
system_only = ssl.create_default_context()
out = {
    "noauth": get("/v2/", with_ca, False)[0],
    "auth": get("/v2/", with_ca, True)[0],
    "tags": get(f"/v2/{repo}/tags/list", with_ca, True)[1],
    "no_ca": get("/v2/", system_only, True)[0],
}
print(json.dumps(out))
"""


def _tiny_image(workdir: Path, ref: str, env: dict[str, str]) -> None:
    """A one-file image made here (no registry on the internet is reachable)."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        payload = Path(tmp) / "hello.txt"
        payload.write_text("hello from the meshctl lab registry\n")
        tarball = Path(tmp) / "tiny.tar"
        with tarfile.open(tarball, "w") as tar:
            tar.add(payload, arcname="hello.txt")
        podman("import", str(tarball), ref, env=env)


def _push_fails(info: RegistryInfo, ref: str, authfile: Path, cert_dir: Path | None,
                env: dict[str, str]) -> str:
    """Push with the given authfile/cert dir and return podman's stderr; it must fail."""
    cmd = ["podman", "push", "--authfile", str(authfile), "--tls-verify=true", "--quiet"]
    if cert_dir is not None:
        cmd += ["--cert-dir", str(cert_dir)]
    assert_lab_address(info.host)
    proc = run([*cmd, ref, f"docker://{info.hostport}/{REPO}:denied"], env=env, check=False,
               timeout=120)
    if proc.returncode == 0:
        raise LabError(f"selftest: push succeeded with authfile={authfile} cert_dir={cert_dir}")
    return proc.stderr.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit.registry_selftest")
    parser.add_argument("--prefix", default="labkit-regtest")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    args = parser.parse_args(argv)
    prefix: str = args.prefix
    workdir: Path = args.workdir.resolve()
    t = Timings()
    total = time.monotonic()

    with t.step("prepare host"):
        env = prepare_host(workdir)
    with t.step(f"base image ({image_status(env)})"):
        base = build_base_image(workdir, env)
    with t.step(f"registry image ({registry_image_status(env, base)})"):
        image = build_registry_image(workdir, env, base)
    remove_prefixed(prefix, env=env)  # leftovers of a run killed before its teardown
    _, pubkey = ssh_keypair(workdir)

    net = f"{prefix}-net"
    reg_name, client_name = f"{prefix}-registry", f"{prefix}-client"
    tiny = f"localhost/{prefix}-tiny:latest"
    info: RegistryInfo | None = None
    try:
        subnet = ipaddress.ip_network(free_subnets(1, env=env)[0])
        create_network(net, str(subnet), env=env)
        with t.step("start registry (until 401/200)"):
            info = start_registry(reg_name, image, (net, str(subnet[20])), workdir, pubkey,
                                  env=env)
        print(f"     {info}")  # repr leaves the password out
        got = registry_check(info)
        check(got == {"unauthenticated": 401, "authenticated": 200},
              f"machine -> https://{info.hostport}/v2/: {got}")

        _tiny_image(workdir, tiny, env)
        empty_auth = workdir / "empty-auth.json"
        empty_auth.write_text('{"auths": {}}\n')
        try:
            err = _push_fails(info, tiny, empty_auth, info.cert_dir, env)
        finally:
            empty_auth.unlink()
        check("authentication required" in err or "unauthorized" in err,
              "push without credentials is refused (--cert-dir honoured, TLS passed)")
        good_auth = workdir / "auth.json"
        good_auth.write_text(info.authfile_json())
        good_auth.chmod(0o600)
        try:
            err = _push_fails(info, tiny, good_auth, None, env)
        finally:
            good_auth.unlink()
        check("certificate signed by unknown authority" in err,
              "push without the CA fails TLS verification")
        with t.step("push tiny image"):
            pushed = push_image(info, tiny, f"{REPO}:{TAG}", env=env)
        tags = http_json(info, f"/v2/{REPO}/tags/list")
        check(pushed == f"{info.hostport}/{REPO}:{TAG}" and tags == {"name": REPO, "tags": [TAG]},
              f"pushed {pushed}; registry lists {tags}")

        with t.step("client host"):
            start_host(client_name, base, [(net, str(subnet[21]))], pubkey, env=env)
        ca_in = "/root/lab-registry-ca.crt"
        podman("exec", "-i", client_name, "sh", "-c", f"cat > {ca_in}", env=env,
               input=info.ca_cert_path.read_text(), timeout=30)
        out = ""
        for _ in range(20):  # python3 may run before the client's network is up: bounded retry
            proc = podman("exec", "-i", client_name, "python3", "-c", CLIENT_PROBE,
                          f"https://{info.hostport}", ca_in, info.username, REPO,
                          env=env, input=info.password + "\n", timeout=60)
            out = proc.stdout.strip()
            if '"noauth": 401' in out:
                break
            time.sleep(0.5)
        result = json.loads(out)
        check(result["noauth"] == 401 and result["auth"] == 200,
              f"client -> /v2/ with the CA: {result['noauth']} without, {result['auth']} with auth")
        check(result["tags"] == {"name": REPO, "tags": [TAG]},
              f"client sees the pushed tag: {result['tags']}")
        check(isinstance(result["no_ca"], str) and "CERTIFICATE_VERIFY_FAILED" in result["no_ca"],
              f"client without the CA: {result['no_ca']}")

        leaked = [p for p in workdir.rglob("*.log") if info.password in p.read_text(errors="replace")]
        journal = podman("exec", reg_name, "journalctl", "-u", "docker-registry", "--no-pager",
                         env=env, check=False, timeout=30).stdout
        check(not leaked and info.password not in journal,
              "password absent from workdir logs and the registry's journal")
    finally:
        with t.step("teardown"):
            try:
                remove_hosts([client_name], env=env)
                if info is not None:
                    remove_registry(info, env=env)
                remove_hosts([reg_name], env=env)  # also when start_registry failed midway
                remove_network(net, env=env)
                podman("rmi", "--ignore", tiny, env=env, check=False)
            except LabError as exc:  # report, but do not hide the error that got us here
                print(f"teardown failed: {exc}", file=sys.stderr)
    print(f"registry selftest passed in {time.monotonic() - total:.1f} s")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except LabError as exc:
        print(f"registry selftest FAILED: {exc}", file=sys.stderr)
        sys.exit(1)
