"""A private container registry (TLS + htpasswd auth) running as a lab host.

Debian's `docker-registry` (distribution 2.8) in a systemd lab container, with a CA made here
and a bcrypt htpasswd file, so execution nodes can pull Execution Environment images the way
they would from a real private registry. Facts behind the choices: shared/reference/lab-notes.md,
"Private registry with TLS and auth".

The password is a secret: it never goes into argv, a log, an exception message or a repr.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import json
import os
import re
import secrets
import ssl
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from labkit.errors import LabError
from labkit.hostprep import podman, run
from labkit.hosts import assert_lab_address, remove_hosts, start_host
from labkit.image import RECIPE_LABEL, _image_id, _image_label, _logged

REGISTRY_IMAGE = "localhost/meshctl-lab-registry:latest"
REGISTRY_PORT = 5000
# Bump when the image changes in a way the Containerfile/setup texts below do not show.
REGISTRY_RECIPE_VERSION = 1
BUILD_TIMEOUT = 600.0
PUSH_TIMEOUT = 300.0
READY_TIMEOUT = 60.0
BOOT_TIMEOUT = 60.0
HTTP_TIMEOUT = 5.0

# Paths inside the registry container.
CONF_DIR = "/etc/docker/registry"
CERT_IN = f"{CONF_DIR}/tls/server.crt"
KEY_IN = f"{CONF_DIR}/tls/server.key"
HTPASSWD_IN = f"{CONF_DIR}/htpasswd"
STORAGE_DIR = "/var/lib/docker-registry"
SERVICE = "docker-registry.service"

REGISTRY_SETUP = """\
set -eu
# No daemon may start during the build (no systemd runs here): postinst asks policy-rc.d.
printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d
chmod 755 /usr/sbin/policy-rc.d
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker-registry
rm -f /usr/sbin/policy-rc.d
# Its packaged config (auth path = a directory) fails at boot: start_registry enables it once
# the real config is in place.
systemctl disable docker-registry.service
apt-get clean
rm -rf /var/lib/apt/lists/*
"""

CONFIG_YML = f"""\
version: 0.1
log:
  level: info
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: {STORAGE_DIR}
  delete:
    enabled: true
http:
  addr: :{REGISTRY_PORT}
  headers:
    X-Content-Type-Options: [nosniff]
  tls:
    certificate: {CERT_IN}
    key: {KEY_IN}
auth:
  htpasswd:
    realm: meshctl-lab-registry
    path: {HTPASSWD_IN}
"""

_USER_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,31}$")
# repo[/repo...]:tag, lower-case as the distribution spec wants.
_REPO_TAG_RE = re.compile(r"^[a-z0-9]+(?:[._/-][a-z0-9]+)*:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class RegistryInfo:
    """Where the registry is and how to reach it; `password` is left out of repr()."""

    name: str  # the lab host (container) running it
    host: str  # its IPv4 address on the lab network
    port: int
    username: str
    password: str = field(repr=False)
    ca_cert_path: Path  # PEM of the CA that signed the server certificate (on the machine)
    htpasswd_path: Path
    secrets_dir: Path  # 0700 dir on the machine holding all of the above

    @property
    def hostport(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def cert_dir(self) -> Path:
        """A directory whose only file is ca.crt: podman's --cert-dir, or the content of
        /etc/containers/certs.d/HOST:PORT/ on a node."""
        return self.ca_cert_path.parent

    def authfile_json(self) -> str:
        """containers-auth.json(5) content for this registry (a secret: write it 0600)."""
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return json.dumps({"auths": {self.hostport: {"auth": token}}}, indent=2) + "\n"


# --- image ----------------------------------------------------------------------------------

def registry_recipe_hash(base_id: str) -> str:
    recipe = {"base": base_id, "setup": REGISTRY_SETUP, "version": REGISTRY_RECIPE_VERSION}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def registry_image_status(
    env: Mapping[str, str], base_image: str, ref: str = REGISTRY_IMAGE
) -> str:
    """What build_registry_image would do: "current" (nothing) or "stale" (podman build)."""
    base_id = _image_id(base_image, env)
    if base_id and _image_label(ref, env) == registry_recipe_hash(base_id):
        return "current"
    return "stale"


def build_registry_image(
    workdir: Path, env: Mapping[str, str], base_image: str, ref: str = REGISTRY_IMAGE
) -> str:
    """Build `ref` FROM base_image plus Debian's docker-registry; skipped when current.

    The recipe hash includes the base image's ID, so a rebuilt base rebuilds this too.
    """
    base_id = _image_id(base_image, env)
    if base_id is None:
        raise LabError(f"base image {base_image} not found (build_base_image first)")
    want = registry_recipe_hash(base_id)
    if _image_label(ref, env) == want:
        return ref
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "registry-image-build.log"
    log.write_text("")  # one build per log
    old_id = _image_id(ref, env)
    with tempfile.TemporaryDirectory(prefix="labkit-registry-build-", dir=workdir) as ctx_name:
        ctx = Path(ctx_name)
        (ctx / "setup.sh").write_text(REGISTRY_SETUP)
        (ctx / "Containerfile").write_text(
            f"FROM {base_id}\n"  # by ID: the hash above names exactly this base
            "COPY setup.sh /tmp/registry-setup.sh\n"
            "RUN sh /tmp/registry-setup.sh && rm /tmp/registry-setup.sh\n"
            f"LABEL {RECIPE_LABEL}={want}\n"
        )
        _logged(
            ["podman", "build", "--pull=never", "--layers=false", "-t", ref,
             "-f", str(ctx / "Containerfile"), str(ctx)],
            env=env, log=log, step="podman build (registry)", timeout=BUILD_TIMEOUT,
        )
    if _image_label(ref, env) != want:
        raise LabError(f"podman build: {ref} lacks label {RECIPE_LABEL}={want}; see {log}")
    if old_id and old_id != _image_id(ref, env):
        podman("rmi", old_id, env=env, check=False)  # superseded; kept if a container uses it
    return ref


# --- certificates and credentials -----------------------------------------------------------

def _write_private(path: Path, data: str | bytes, mode: int = 0o600) -> None:
    """Write a file created with `mode` from the start (no window where it is world-readable)."""
    raw = data.encode() if isinstance(data, str) else data
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        os.fchmod(fh.fileno(), mode)  # an existing file keeps its old mode otherwise
        fh.write(raw)


def make_certificates(ip: str, hostname: str) -> tuple[bytes, bytes, bytes]:
    """Return (CA cert PEM, server cert PEM, server key PEM); the CA key is never stored.

    Two levels rather than one self-signed leaf: clients then trust a CA, as at a real site.
    The extensions (SKI/AKI, critical basicConstraints) satisfy Go's and OpenSSL's strict checks.
    """
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=30)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"meshctl lab CA for {hostname}")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address(ip)), x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return (ca_cert.public_bytes(serialization.Encoding.PEM),
            cert.public_bytes(serialization.Encoding.PEM), key_pem)


def make_htpasswd(username: str, password: str) -> str:
    """One bcrypt htpasswd line; the password goes through stdin (`-i`), never argv."""
    proc = run(["htpasswd", "-iBn", username], input=password, timeout=30, step="htpasswd")
    line = proc.stdout.strip()
    if not line.startswith(f"{username}:$2"):
        raise LabError("htpasswd did not print a bcrypt entry")  # output not echoed: a hash
    return line + "\n"


# --- HTTP from the machine ------------------------------------------------------------------

def _opener(info: RegistryInfo, ca_file: Path | None) -> urllib.request.OpenerDirector:
    ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    # No ProxyHandler entries: a lab address must never be sent to an http(s)_proxy.
    return urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                       urllib.request.HTTPSHandler(context=ctx))


def http_status(info: RegistryInfo, path: str = "/v2/", auth: bool = False) -> int:
    """Status of an HTTPS GET from the machine, trusting only the lab CA."""
    assert_lab_address(info.host)
    req = urllib.request.Request(f"https://{info.hostport}{path}")
    if auth:
        token = base64.b64encode(f"{info.username}:{info.password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with _opener(info, info.ca_cert_path).open(req, timeout=HTTP_TIMEOUT) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)


def http_json(info: RegistryInfo, path: str) -> object:
    """GET path with basic auth and return its JSON body (e.g. /v2/REPO/tags/list)."""
    assert_lab_address(info.host)
    token = base64.b64encode(f"{info.username}:{info.password}".encode()).decode()
    req = urllib.request.Request(f"https://{info.hostport}{path}",
                                 headers={"Authorization": f"Basic {token}"})
    with _opener(info, info.ca_cert_path).open(req, timeout=HTTP_TIMEOUT) as resp:
        return json.loads(resp.read())


def registry_check(info: RegistryInfo) -> dict[str, int]:
    """{"unauthenticated": status, "authenticated": status} of GET /v2/; expect 401 and 200."""
    return {"unauthenticated": http_status(info), "authenticated": http_status(info, auth=True)}


def _service_failed(info: RegistryInfo, env: Mapping[str, str]) -> str | None:
    """The unit's last journal lines if systemd gave up on it (no use waiting), else None."""
    state = podman("exec", info.name, "systemctl", "is-active", SERVICE, env=env,
                   check=False, timeout=30).stdout.strip()
    if state != "failed":
        return None
    return podman("exec", info.name, "journalctl", "-u", SERVICE, "-n", "5", "--no-pager",
                  "-o", "cat", env=env, check=False, timeout=30).stdout.strip()


def _wait_ready(info: RegistryInfo, timeout: float, env: Mapping[str, str]) -> None:
    deadline = time.monotonic() + timeout
    last = "no attempt"
    next_unit_check = time.monotonic() + 1.0
    for _ in range(int(timeout / 0.25) + 10):  # count bound besides the time bound
        if time.monotonic() > deadline:
            break
        try:
            got = registry_check(info)
            if got == {"unauthenticated": 401, "authenticated": 200}:
                return
            last = f"statuses {got}"
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, ssl.SSLCertVerificationError):
                raise LabError(f"registry {info.hostport}: TLS verification failed: "
                               f"{exc.reason}") from exc  # will not fix itself
            last = str(exc.reason)
        except OSError as exc:  # reset/timeout while the daemon starts
            last = str(exc)
        if time.monotonic() > next_unit_check:
            if journal := _service_failed(info, env):
                raise LabError(f"registry {info.name}: {SERVICE} failed:\n{journal}")
            next_unit_check = time.monotonic() + 1.0
        time.sleep(0.25)
    raise LabError(f"registry {info.hostport} not ready within {timeout:.0f} s ({last}); "
                   f"see: podman exec {info.name} journalctl -u {SERVICE}")


# --- lifecycle ------------------------------------------------------------------------------

def _put_file(name: str, path: str, content: str, mode: str, env: Mapping[str, str]) -> None:
    """Write content (via stdin, never argv) to path in the container, owned by the service."""
    # The directory too must be enterable by the service user (umask 077 would make it 0700).
    script = ('install -d -o root -g docker-registry -m 0750 "$(dirname "$1")" '
              '&& umask 077 && cat > "$1" '
              '&& chown docker-registry:docker-registry "$1" && chmod "$2" "$1"')
    podman("exec", "-i", name, "sh", "-c", script, "sh", path, mode,
           env=env, input=content, timeout=30)


def start_registry(
    name: str,
    image: str,
    network_and_ip: tuple[str, str],
    workdir: Path,
    authorized_key: str,
    *,
    env: Mapping[str, str],
    username: str = "meshlab",
    password: str | None = None,
    ready_timeout: float = READY_TIMEOUT,
) -> RegistryInfo:
    """Start lab host `name` running the registry at https://IP:5000 and wait until it answers
    401 without and 200 with credentials. On failure the host is removed again.

    Files on the machine go to workdir/registry-NAME/ (0700): ca/ca.crt, server.crt,
    server.key (0600), htpasswd (0600).
    """
    if not _USER_RE.match(username):
        raise LabError(f"registry user name {username!r} must match {_USER_RE.pattern}")
    if password is not None and (not password or "\n" in password or ":" in password):
        raise LabError("registry password must be non-empty, one line, without ':'")
    network, ip = network_and_ip
    ip = str(ipaddress.ip_address(ip))
    password = password if password is not None else secrets.token_urlsafe(24)

    secrets_dir = workdir.resolve() / f"registry-{name}"
    secrets_dir.mkdir(parents=True, exist_ok=True)
    secrets_dir.chmod(0o700)
    (secrets_dir / "ca").mkdir(exist_ok=True)
    ca_pem, cert_pem, key_pem = make_certificates(ip, name)
    ca_path = secrets_dir / "ca" / "ca.crt"
    _write_private(ca_path, ca_pem, 0o644)
    _write_private(secrets_dir / "server.crt", cert_pem, 0o644)
    _write_private(secrets_dir / "server.key", key_pem)
    htpasswd = make_htpasswd(username, password)
    htpasswd_path = secrets_dir / "htpasswd"
    _write_private(htpasswd_path, htpasswd)
    info = RegistryInfo(name=name, host=ip, port=REGISTRY_PORT, username=username,
                        password=password, ca_cert_path=ca_path, htpasswd_path=htpasswd_path,
                        secrets_dir=secrets_dir)

    start_host(name, image, [(network, ip)], authorized_key, env=env)
    try:
        # systemctl needs a booted systemd; ask podman rather than ssh (no key path needed).
        boot = podman("exec", name, "timeout", str(int(BOOT_TIMEOUT)), "systemctl",
                      "is-system-running", "--wait", env=env, check=False,
                      timeout=BOOT_TIMEOUT + 15).stdout.strip()
        if boot not in ("running", "degraded"):
            raise LabError(f"{name}: systemd is {boot or 'unknown'!r} after {BOOT_TIMEOUT:.0f} s")
        _put_file(name, f"{CONF_DIR}/config.yml", CONFIG_YML, "0644", env)
        _put_file(name, CERT_IN, cert_pem.decode(), "0644", env)
        _put_file(name, KEY_IN, key_pem.decode(), "0600", env)
        _put_file(name, HTPASSWD_IN, htpasswd, "0600", env)
        podman("exec", name, "sh", "-c",
               f"install -d -o docker-registry -g docker-registry -m 0750 {STORAGE_DIR} "
               f"&& systemctl enable {SERVICE} && systemctl restart {SERVICE}",
               env=env, timeout=60)
        _wait_ready(info, ready_timeout, env)
    except BaseException:
        remove_hosts([name], env=env)
        raise
    return info


def remove_registry(info: RegistryInfo, *, env: Mapping[str, str]) -> None:
    """Remove the registry host and its key/htpasswd files on the machine (keeps the CA cert)."""
    remove_hosts([info.name], env=env)
    for secret in (info.secrets_dir / "server.key", info.htpasswd_path):
        secret.unlink(missing_ok=True)


# --- push -----------------------------------------------------------------------------------

def push_image(
    info: RegistryInfo,
    local_image_ref: str,
    remote_repo_tag: str,
    *,
    env: Mapping[str, str],
    timeout: float = PUSH_TIMEOUT,
) -> str:
    """`podman push` local_image_ref to IP:5000/remote_repo_tag; returns that reference.

    Credentials go through a temporary 0600 --authfile (not --creds, which would show the
    password in ps) and trust through --cert-dir holding only the lab CA (TLS stays verified).
    """
    if not _REPO_TAG_RE.match(remote_repo_tag):
        raise LabError(f"remote_repo_tag {remote_repo_tag!r} must look like 'repo/name:tag'")
    assert_lab_address(info.host)
    dest = f"{info.hostport}/{remote_repo_tag}"
    # Go's proxy support would send a lab address to an outside proxy: exempt it.
    no_proxy = ",".join(p for p in (os.environ.get("NO_PROXY"), info.host) if p)
    push_env = {**env, "NO_PROXY": no_proxy, "no_proxy": no_proxy}
    with tempfile.TemporaryDirectory(prefix="labkit-push-") as tmp:  # mkdtemp: 0700
        authfile = Path(tmp) / "auth.json"
        _write_private(authfile, info.authfile_json())
        run(["podman", "push", "--authfile", str(authfile), "--cert-dir", str(info.cert_dir),
             "--tls-verify=true", "--quiet", local_image_ref, f"docker://{dest}"],
            env=push_env, timeout=timeout, step="podman push")
    return dest
