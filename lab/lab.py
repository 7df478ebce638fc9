"""The meshctl lab: real hosts, provisioned by meshctl, verified with testinfra.

    python lab/lab.py            build -> networks -> hosts -> registry -> provision
                                 -> verify -> re-provision (0 changed) -> teardown
    python lab/lab.py --keep     the same, but leave the lab running
    python lab/lab.py down       remove everything the lab made (by name)
    python lab/lab.py --backend vagrant   RHEL-family VMs (needs a hypervisor)

Usually run through nox: ``nox -s lab -- --keep``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import labkit  # noqa: E402
from ee import build_ee_image, push_ee  # noqa: E402
from job import run_job  # noqa: E402
from labkit import leftovers  # noqa: E402

PREFIX = "meshlab-"
WORK = HERE / ".work" / "lab"
MESH = "meshlab"
OPENSSL_EXAMPLE = ROOT / "examples" / "meshctl-certbackend-openssl"
OPENSSL_PLUGIN = "meshctl_certbackend_openssl"
#: The example backend signs with this digest, meshctl's own with sha256: a node's
#: certificate shows which of the two issued it.
OPENSSL_DIGEST = "sha384"
# name -> how it is cut off: "internal" has no route out at all; "isolate" reaches
# the outside (Debian's mirror, for packages) but not another "isolate" network
# (netavark blocks traffic between networks that both carry the option).
NETWORKS = {"ctl": "isolate", "isolated": "internal", "edge": "isolate"}


@dataclass
class LabHost:
    name: str
    networks: list[str]
    role: str | None = None  # mesh role; None: not a mesh node
    peers: list[str] = field(default_factory=list)
    via: str | None = None
    nested: bool = False  # runs rootless podman (execution nodes)
    from_control: bool = False  # peers_from_control_nodes: awx01 dials it
    #: The third-party certificate backend (examples/meshctl-certbackend-openssl) issues
    #: this node's certificate instead of the built-in one, from the same mesh CA.
    openssl_backend: bool = False

    @property
    def ssh_net(self) -> str:
        return self.networks[0]


def lab_hosts(extra_exec: int = 0) -> list[LabHost]:
    hosts = [
        # awx01 is a control node meshctl provisions (AAP VM installs have them), set up the
        # way awx-operator sets up AWX's receptor: it dials the nodes peered from control.
        LabHost("awx01", ["ctl"], role="control"),
        # hop01 dials exec02: exec02's edge network has no route to hop01's ctl address.
        LabHost("hop01", ["ctl", "edge"], role="hop", peers=["exec02"], from_control=True),
        LabHost("exec01", ["ctl", "isolated"], role="execution", peers=["hop01"], nested=True, from_control=True),
        LabHost("exec02", ["edge"], role="execution", via="hop01", nested=True, openssl_backend=True),
        LabHost("target01", ["isolated"]),
        LabHost("registry01", ["ctl"]),
    ]
    for i in range(extra_exec):
        hosts.append(LabHost(f"exec{i + 3:02d}", ["ctl"], role="execution", peers=["hop01"], nested=True))
    return hosts


class Lab:
    def __init__(self, extra_exec: int = 0, log=print, receptor_binary: str | None = None):
        self.hosts = lab_hosts(extra_exec)
        self.receptor_binary = receptor_binary
        self.work = WORK
        self.logs = WORK / "logs"
        self.env: dict[str, str] = {}
        self.ips: dict[str, dict[str, str]] = {}
        self.key: Path | None = None
        self.registry = None
        self.registry_host = ""  # how nodes name the registry (its container name, via DNS)
        self.ee_ref = ""
        self.with_registries = False
        self.wheels: Path | None = None
        self.log = log
        self.step_name = ""
        self.step_host = ""
        self.timings: dict[str, float] = {}

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.step_name, self.step_host = name, ""
        self.log(f"==> {name}")
        t0 = time.monotonic()
        yield
        self.timings[name] = time.monotonic() - t0
        self.log(f"    {name}: {self.timings[name]:.1f}s")

    def container(self, host: str) -> str:
        return PREFIX + host

    # -- bring-up ----------------------------------------------------------------
    def up(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        with self.step("prepare host"):
            self.env = labkit.prepare_host(self.work)
            labkit.remove_prefixed(PREFIX, env=self.env)  # leftovers of a killed run
        with self.step("build images"):
            image = labkit.build_base_image(self.work, self.env)
            registry_image = labkit.build_registry_image(self.work, self.env, image)
        with self.step("download wheels"):
            from labkit.image import cache_dir
            from wheels import ensure_wheelhouse

            self.wheels = ensure_wheelhouse(cache_dir() / "wheels")
        with self.step("create networks"):
            subnets = labkit.free_subnets(len(NETWORKS), env=self.env)
            self.subnets = dict(zip(NETWORKS, subnets, strict=True))
            for net, cut in NETWORKS.items():
                labkit.create_network(PREFIX + net, self.subnets[net], internal=cut == "internal",
                                      isolate=cut == "isolate", env=self.env)
        self.key, pub = labkit.ssh_keypair(self.work)
        with self.step("start hosts"):
            for i, h in enumerate(self.hosts):
                if h.name == "registry01":
                    continue
                self.step_host = h.name
                addrs = [(PREFIX + n, self._ip(n, i)) for n in h.networks]
                labkit.start_host(self.container(h.name), image, addrs, pub, env=self.env, nested_podman=h.nested)
                self.ips[h.name] = {n: self._ip(n, i) for n in h.networks}
            for h in self.hosts:
                if h.name in self.ips:
                    self.step_host = h.name
                    labkit.wait_for_ssh(self.ips[h.name][h.ssh_net], self.key, env=self.env)
        with self.step("start registry"):
            self.step_host = "registry01"
            i = [h.name for h in self.hosts].index("registry01")
            ip = self._ip("ctl", i)
            self.registry = labkit.start_registry(self.container("registry01"), registry_image,
                                                  (PREFIX + "ctl", ip), self.work, pub, env=self.env)
            # On edge too, so exec02 can pull; nodes name it by its container name, which
            # each network's DNS answers with its own address (the certificate names it).
            labkit.connect_network(self.container("registry01"), PREFIX + "edge", self._ip("edge", i), env=self.env)
            self.ips["registry01"] = {"ctl": ip, "edge": self._ip("edge", i)}
            self.registry_host = f"{self.container('registry01')}:{self.registry.port}"
        with self.step("build and push the execution environment"):
            self.step_host = "registry01"
            image = build_ee_image(self.work, self.env)
            pushed = push_ee(self.registry, image, self.env)
            self.ee_ref = f"{self.registry_host}/{pushed.split('/', 1)[1]}"
            self.log(f"    pushed {pushed} (nodes pull {self.ee_ref})")
        self.step_host = ""
        self._write_files()

    def _ip(self, net: str, index: int) -> str:
        return self.subnets[net].rsplit(".", 1)[0] + f".{10 + index}"

    def _write_files(self) -> None:
        keys = []
        cfg = []
        for h in self.hosts:
            hk = labkit.host_key(self.container(h.name), env=self.env)
            keys += [f"{ip} {hk}" for ip in self.ips[h.name].values()]
            keys.append(f"{h.name} {hk}")
            cfg += [f"Host {h.name}", f"  HostName {self.ips[h.name][h.ssh_net]}", "  User root",
                    f"  IdentityFile {self.key}", f"  UserKnownHostsFile {self.work / 'known_hosts'}",
                    "  StrictHostKeyChecking yes", "  HostKeyAlias " + h.name,
                    # One connection per host for testinfra's many small commands.
                    "  ControlMaster auto", f"  ControlPath {self.work}/cm-%C", "  ControlPersist 30s"]
            if h.via:
                cfg.append(f"  ProxyJump {h.via}")
            cfg.append("")
        (self.work / "known_hosts").write_text("\n".join(keys) + "\n")
        (self.work / "ssh_config").write_text("\n".join(cfg))
        self.make_mesh_ca()
        (self.work / "mesh.yml").write_text(self.mesh_yml())
        inventory = {
            "ssh_config": str(self.work / "ssh_config"),
            "mesh_yml": str(self.work / "mesh.yml"),
            "hosts": {h.name: {"role": h.role, "mesh": h.role is not None, "networks": self.ips[h.name]}
                      for h in self.hosts},
            "target": {"name": "target01", "address": self.ips["target01"]["isolated"]},
            "registry": {"hostport": self.registry.hostport, "ca": str(self.registry.ca_cert_path),
                         "name": self.registry_host, "ee": self.ee_ref},
            "receptor_binary": self.receptor_binary,
        }
        (self.work / "inventory.json").write_text(json.dumps(inventory, indent=2) + "\n")

    def _registries_yaml(self) -> list[str]:
        if not self.with_registries:
            return []
        return [
            "registries:",
            f"  - host: {self.registry_host}",
            f"    username: {self.registry.username}",
            "    password_env: MESHLAB_REGISTRY_PASSWORD",
            f"    ca_file: {self.registry.ca_cert_path}",
            f"    prepull: [{self.ee_ref}]",
        ]

    def mesh_ca_dir(self) -> Path:
        return self.work / "state" / MESH

    def make_mesh_ca(self) -> None:
        """The mesh CA, made with the openssl CLI where meshctl's selfsigned backend
        keeps its own: the built-in backend and the example backend both sign with it,
        so every node trusts every other (a user bringing their own CA)."""
        ca = self.mesh_ca_dir()
        if (ca / "ca.crt").exists():
            return
        ca.mkdir(parents=True, exist_ok=True, mode=0o700)
        r = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:4096", "-nodes", "-days", "3650", "-sha256",
             "-keyout", str(ca / "ca.key"), "-out", str(ca / "ca.crt"), "-subj", f"/CN={MESH} Receptor Root CA",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-addext", "subjectKeyIdentifier=hash"], capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise labkit.LabError(f"openssl could not make the lab's mesh CA: {r.stderr.strip()[-500:]}")
        os.chmod(ca / "ca.key", 0o600)

    def third_party_backend(self) -> None:
        """The example certificate backend, written against meshctl.plugin alone, passes
        meshctl.testing's conformance check with the lab's CA, and issued exec02's
        certificate on the host (its digest, not meshctl's)."""
        with self.step("third-party certificate backend"):
            sys.path.insert(0, str(OPENSSL_EXAMPLE))
            import meshctl_certbackend_openssl as example

            from meshctl.plugin import BackendContext
            from meshctl.testing import plugin_manager
            from meshctl.testing.backends import check_certificate_backend

            registered = plugin_manager(example).cert_backends()["openssl"]
            ca = self.mesh_ca_dir()
            options = registered.options_model(ca_cert=str(ca / "ca.crt"), ca_key=str(ca / "ca.key"),
                                               digest=OPENSSL_DIGEST)
            backend = registered.factory(options, BackendContext(MESH, self.work / "state" / "example", self.work))
            problems = check_certificate_backend(backend)
            if problems:
                raise labkit.LabError("the example backend fails the conformance check: " + "; ".join(problems))
            self.log("    conformance check: the example backend passes (issue, sign_csr, trust_bundle)")
            want = {h.name: (OPENSSL_DIGEST if h.openssl_backend else "sha256") for h in self.hosts
                    if h.role == "execution"}
            for name, digest in want.items():
                self.step_host = name
                r = self.ssh(name, f"openssl x509 -noout -text -in /etc/receptor/tls/{name}.crt")
                algs = {line.split(":", 1)[1].strip() for line in r.stdout.splitlines()
                        if "Signature Algorithm:" in line}
                if r.returncode != 0 or algs != {f"{digest}WithRSAEncryption"}:
                    raise labkit.LabError(f"{name}: certificate signed with {sorted(algs) or r.stderr.strip()}, "
                                          f"expected {digest} ({'example' if digest != 'sha256' else 'built-in'} backend)")
            self.log(f"    on the hosts: exec02's certificate is the example backend's ({OPENSSL_DIGEST}), "
                     f"the other execution nodes' meshctl's own (sha256)")

    def enable_registries(self) -> None:
        self.with_registries = True
        (self.work / "mesh.yml").write_text(self.mesh_yml())

    def pull_without_registry_config(self) -> None:
        """Before meshctl configures the registry, awx cannot pull the EE."""
        with self.step("pull without meshctl's registry config"):
            self.step_host = "exec01"
            r = self.ssh("exec01", f"runuser -l awx -c 'podman pull {self.ee_ref}'")
            out = r.stdout + r.stderr
            if r.returncode == 0:
                raise labkit.LabError("the EE pulled before meshctl configured the registry: the check proves nothing")
            if "x509" not in out and "certificate" not in out and "unauthorized" not in out:
                raise labkit.LabError(f"pull failed for another reason than trust or credentials: {out[-500:]}")
            self.log("    refused as expected: " + next(ln for ln in out.splitlines() if "x509" in ln or
                                                        "certificate" in ln or "unauthorized" in ln).strip()[-160:])

    def ssh(self, host: str, command: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(["ssh", "-F", str(self.work / "ssh_config"), host, command], capture_output=True,
                              text=True, timeout=timeout)

    def jobs(self) -> None:
        """The seed scenario: a job in the EE from the private registry, run the way the
        control node does (transmit | worker on the node as awx | process), against
        target01, which only exec01's network reaches; through exec02 it must fail."""
        target = self.ips["target01"]["isolated"]
        with self.step("job through exec01"):
            self.step_host = "exec01"
            # registry=None: the node pulls with what meshctl put there (auth.json, certs.d).
            ok = run_job(self.work / "jobs", "exec01", target, self.ee_ref, self.work / "ssh_config", self.key, None)
            self.log(f"    {ok.status}: {ok.events} events, target01 hostname {ok.hostname!r}, "
                     f"addresses {ok.ipv4_addresses}, {ok.duration_s:.1f}s")
            if ok.status != "successful" or target not in ok.ipv4_addresses:
                raise labkit.LabError(f"job through exec01: {ok.status} (rc {ok.rc}): {ok.stdout_tail[-1500:]}")
        with self.step("job through exec02 (cannot reach target01)"):
            self.step_host = "exec02"
            bad = run_job(self.work / "jobs", "exec02", target, self.ee_ref, self.work / "ssh_config", self.key, None)
            self.log(f"    {bad.status}: unreachable={bad.unreachable}, {bad.duration_s:.1f}s")
            if bad.status != "failed" or bad.unreachable < 1:
                raise labkit.LabError(f"job through exec02 should fail with target01 unreachable, got {bad.status} "
                                      f"(unreachable={bad.unreachable}): {bad.stdout_tail[-1000:]}")

    def snapshot(self, host: str) -> set[str]:
        r = self.ssh(host, leftovers.LISTING)
        return set(r.stdout.split())

    def day2(self, before_exec02: set[str]) -> None:
        """status, a broken node flagged alone, diagnose without secrets, drift after a
        peer change, and removal of exec02 leaving nothing meshctl created."""
        with self.step("meshctl status"):
            self._status(expect_unhealthy=[])
            self.ssh("exec01", "mv /etc/receptor/receptor.conf /etc/receptor/receptor.conf.away")
            try:
                self._status(expect_unhealthy=["exec01"])
            finally:
                self.ssh("exec01", "mv /etc/receptor/receptor.conf.away /etc/receptor/receptor.conf")
        with self.step("meshctl diagnose exec01"):
            import tarfile

            out = self.work / "diagnose-exec01.tar.gz"
            r = self.meshctl("diagnose", "exec01", "--out", str(out), log_name="diagnose.log")
            if r.returncode != 0:
                raise labkit.LabError(f"diagnose failed: {r.stderr[-1000:]}")
            with tarfile.open(out) as tar:
                names = {m.name.split("/", 1)[1] for m in tar.getmembers()}
                blob = b"".join(tar.extractfile(m).read() for m in tar.getmembers() if m.isfile())
            want = {"receptor.conf", "unit-status.txt", "receptor.log", "journal.txt", "certificates.txt",
                    "podman-info.txt", "worker-info.txt", "MANIFEST"}
            secrets = [self.registry.password.encode(), b"PRIVATE KEY-----\n"]
            key = self.ssh("exec01", "cat /etc/receptor/tls/exec01.key").stdout.strip().splitlines()
            secrets.append("".join(key[1:-1])[:64].encode())
            if not want <= names or any(s in blob for s in secrets):
                raise labkit.LabError(f"diagnose archive: missing {sorted(want - names)}, "
                                      f"secret found: {[i for i, s in enumerate(secrets) if s in blob]}")
            self.log(f"    {out.name}: {len(names)} files, no secret inside")
        with self.step("drift after a peer change"):
            mesh = self.work / "mesh.yml"
            original = mesh.read_text()
            mesh.write_text(original.replace("    peers: [hop01]\n", "    peers: [hop01, exec02]\n", 1))
            try:
                plan = self.meshctl("plan", log_name="plan-drift.log").stdout
                drifted = [ln.split(":")[0] for ln in plan.splitlines() if "-- drift: receptor.conf" in ln]
                if drifted != ["exec01"]:
                    raise labkit.LabError(f"drift should be reported for exec01 only, got {drifted}:\n{plan[-1500:]}")
                self.provision("drift-fix")
                plan = self.meshctl("plan", log_name="plan-after.log").stdout
                if "exec01: in sync" not in plan:
                    raise labkit.LabError(f"drift not cleared after provision:\n{plan[-1500:]}")
            finally:
                mesh.write_text(original)
            self.provision("restore")
            self.log("    drift reported for exec01 only, cleared by provision")
        with self.step("meshctl remove exec02"):
            self.step_host = "exec02"
            r = self.meshctl("remove", "exec02", "--purge-user", "--yes", "-o", "json", log_name="remove.log")
            if r.returncode != 0:
                raise labkit.LabError(f"remove failed (exit {r.returncode}): {r.stdout[-1500:]} {r.stderr[-500:]}")
            leftover = self.snapshot("exec02") - before_exec02
            r = self.ssh("exec02", leftovers.unowned_command(leftover))
            ours = leftovers.meshctl_leftovers(r.stdout.split())
            if ours:
                raise labkit.LabError(f"remove left files meshctl created: {ours}")
            self.log(f"    nothing meshctl created is left on exec02 ({len(leftover)} new paths, all from packages)")

    def _status(self, expect_unhealthy: list[str]) -> None:
        r = self.meshctl("status", "-o", "json", log_name=f"status-{len(expect_unhealthy)}.log")
        rows = json.loads(r.stdout)["nodes"]
        bad = [row["node"] for row in rows if not row["healthy"]]
        if bad != expect_unhealthy or (r.returncode != 0) != bool(expect_unhealthy):
            raise labkit.LabError(f"status: unhealthy {bad}, expected {expect_unhealthy} (exit {r.returncode})")
        self.log(f"    unhealthy: {bad or 'none'}" + "; " + ", ".join(
            f"{row['node']} cert {row.get('cert_days_left')}d runner {row.get('runner_version')}" for row in rows))

    def secrets_check(self) -> None:
        with self.step("no secret in logs"):
            password = self.registry.password
            leaks = [str(p) for p in self.work.rglob("*") if p.is_file() and p.stat().st_size < 50_000_000
                     and "secrets" not in p.parts and password.encode() in p.read_bytes()]
            if leaks:
                raise labkit.LabError(f"the registry password appears in {leaks}")
            # meshctl's host cache keeps file content it read: never a key or credentials.
            auth = base64.b64encode(f"{self.registry.username}:{password}".encode())
            cached = [str(p) for p in (self.work / "cache").rglob("*") if p.is_file()
                      and (b"PRIVATE KEY" in p.read_bytes() or auth in p.read_bytes())]
            if cached:
                raise labkit.LabError(f"a private key or registry credentials in meshctl's host cache: {cached}")
            n = sum(1 for p in (self.work / "cache").rglob("*") if p.is_file())
            self.log(f"    the registry password appears in no log, topology or report; "
                     f"no key or credentials among the {n} files of meshctl's host cache")

    def mesh_yml(self, only: set[str] | None = None) -> str:
        """The lab's mesh.yml; with ``only``, the mesh of just those hosts."""
        lines = [
            "# Generated by lab/lab.py for this lab run.",
            f"mesh: {MESH}",
            "defaults:",
            f"  ssh: {{user: root, key: {self.key}, become: true}}",
            "  listener: {port: 27199, protocol: tcp}",
            (f"receptor: {{start: true, install: local, binary: {self.receptor_binary}}}"
             if self.receptor_binary else
             "receptor: {start: false, install: none}   # no receptor binary: lay everything down, start nothing"),
            "work_signing: {generate: true}",
            f"python: {{wheelhouse: {self.wheels}}}   # lab hosts cannot reach PyPI: wheels made on this machine",
            *self._registries_yaml(),
            "nodes:",
        ]
        for h in self.hosts:
            if h.role is None or (only is not None and h.name not in only):
                continue
            ip = self.ips[h.name][h.ssh_net]
            lines += [f"  - name: {h.name}", f"    role: {h.role}", f"    address: {ip}"]
            if h.role == "control":
                lines += ["    managed: true", "    listener: false"]
            if h.from_control:
                lines.append("    peers_from_control_nodes: true")
            if h.peers:
                lines.append(f"    peers: [{', '.join(h.peers)}]")
            if h.via:
                lines.append(f"    ssh: {{via: {h.via}}}")
            if h.openssl_backend:
                ca = self.mesh_ca_dir()
                lines.append(f"    certificates: {{backend: openssl, options: {{ca_cert: {ca / 'ca.crt'}, "
                             f"ca_key: {ca / 'ca.key'}, digest: {OPENSSL_DIGEST}}}}}")
        return "\n".join(lines) + "\n"

    # -- provisioning and verification ---------------------------------------------
    def meshctl(self, *args: str, log_name: str, mesh: Path | None = None,
                reaches_nodes: bool = True) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "meshctl", "-p", OPENSSL_PLUGIN, *args, "-f", str(mesh or self.work / "mesh.yml")]
        if reaches_nodes:  # commands that talk only to AWX take no SSH options
            cmd += ["--known-hosts", str(self.work / "known_hosts")]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=self.meshctl_env())
        (self.logs / log_name).write_text(f"$ {' '.join(cmd)}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}")
        return r

    def meshctl_env(self) -> dict[str, str]:
        # The lab's mesh CA and work-signing key live with the lab, not in ~/.local/share;
        # the registry password reaches meshctl only through the environment.
        env = {**os.environ, "MESHCTL_DISABLE_PLUGIN_AUTOLOAD": "1", "MESHCTL_STATE_DIR": str(self.work / "state"),
               "MESHCTL_CACHE_DIR": str(self.work / "cache"),
               # The example backend is loaded with -p from its source tree, as a user's
               # unpublished plugin would be.
               "PYTHONPATH": os.pathsep.join(filter(None, [str(OPENSSL_EXAMPLE), os.environ.get("PYTHONPATH")]))}
        if self.registry is not None:
            env["MESHLAB_REGISTRY_PASSWORD"] = self.registry.password
        return env

    def renew_certificates(self) -> None:
        with self.step("meshctl certs renew"):
            before = self._cert_status("certs-status-1.log")
            r = self.meshctl("certs", "renew", "--force", "-o", "json", log_name="certs-renew.log")
            if r.returncode != 0:
                raise labkit.LabError(f"certs renew failed (exit {r.returncode}): {r.stderr.strip()[-1000:]}")
            after = self._cert_status("certs-status-2.log")
            same = [n for n in before if before[n]["serial"] == after[n]["serial"]]
            older = [n for n in before if after[n]["not_after"] < before[n]["not_after"]]
            if same or older:
                self.step_host = ", ".join(same + older)
                raise labkit.LabError(f"renewal did not replace certificates: same serial {same}, older {older}")
            for n in after:
                self.log(f"    {n:<10} serial {before[n]['serial'][:12]}.. -> {after[n]['serial'][:12]}.., "
                         f"not after {after[n]['not_after'][:19]}")

    def _cert_status(self, log_name: str) -> dict[str, dict]:
        r = self.meshctl("certs", "status", "-o", "json", log_name=log_name)
        rows = {row["node"]: row for row in json.loads(r.stdout)["nodes"]}
        bad = {n: row.get("problems") or row.get("error") for n, row in rows.items() if row["status"] != "ok"}
        if r.returncode != 0 or bad:
            raise labkit.LabError(f"certs status reports problems: {bad}")
        return rows

    def preflight(self) -> None:
        with self.step("meshctl preflight"):
            r = self.meshctl("preflight", "-o", "json", log_name="preflight.log")
            try:
                hosts = json.loads(r.stdout)["hosts"]
            except (json.JSONDecodeError, KeyError):
                raise labkit.LabError(f"meshctl preflight failed (exit {r.returncode}): {r.stderr[-1000:]}") from None
            bad = {h["node"]: [c for c in h["checks"] if not c["ok"]] for h in hosts if h["status"] != "ok"}
            for h in hosts:
                self.log(f"    {h['node']:<10} {h['status']:<6} {len(h['checks'])} checks")
            if bad or r.returncode != 0:
                self.step_host = ", ".join(bad)
                raise labkit.LabError(f"preflight found problems: {bad}")

    def provision(self, n: int | str) -> dict:
        with self.step(f"meshctl provision #{n}"):
            r = self.meshctl("provision", "-o", "json", log_name=f"provision-{str(n).split()[0]}.log")
            try:
                result = json.loads(r.stdout)
            except json.JSONDecodeError:
                raise labkit.LabError(f"meshctl provision #{n} gave no JSON (exit {r.returncode}): "
                                      f"{r.stderr.strip()[-2000:]}") from None
            for h in result["hosts"]:
                self.log(f"    {h['node']:<10} {h['status']:<11} changed={h['changed']:<3} "
                         f"round_trips={h['round_trips']} {h['duration_s']:.1f}s")
            bad = [h for h in result["hosts"] if h["status"] in ("failed", "unreachable")]
            if bad:
                self.step_host = ", ".join(h["node"] for h in bad)
                raise labkit.LabError("; ".join(f"{h['node']}: {h['error']}" for h in bad))
            return result

    def verify(self) -> None:
        with self.step("testinfra verify"):
            env = {**self.meshctl_env(), "MESHLAB_INVENTORY": str(self.work / "inventory.json")}
            cmd = [sys.executable, "-m", "pytest", str(HERE / "verify"), "-p", "no:cacheprovider", "-q", "-rs",
                   "-o", "addopts=", "--rootdir", str(HERE / "verify"),
                   f"--junitxml={self.logs / 'verify.xml'}"]
            r = subprocess.run(cmd, text=True, timeout=1800, env=env, cwd=HERE / "verify")
            if r.returncode != 0:
                raise labkit.LabError(f"testinfra verification failed (exit {r.returncode}); "
                                      f"see the output above and {self.logs / 'verify.xml'}")

    def awx_side(self) -> None:
        """``meshctl awx sync`` of the lab's own mesh.yml against the AWX 24.6.1 stand-in
        (tests/awx_standin, built from a real AWX's answers): AWX must end up describing
        the mesh that runs here, and the peers AWX would write into its control node's
        receptor.conf must be the ones meshctl wrote into awx01's."""
        with self.step("AWX's side (meshctl awx sync, AWX 24.6.1 stand-in)"):
            sys.path.insert(0, str(ROOT / "tests"))
            from awx_standin import PASSWORD, RECORDINGS, USER, awx_standin

            if not RECORDINGS.is_dir():
                self.log(f"    skipped: no AWX recordings at {RECORDINGS}")
                return
            import yaml

            with awx_standin() as awx:
                mesh = self.work / "mesh-awx.yml"
                mesh.write_text(self.mesh_yml() + f'awx: {{url: "{awx.url}", username: {USER}, '
                                "password_env: MESHLAB_AWX_PASSWORD}\n")
                os.environ["MESHLAB_AWX_PASSWORD"] = PASSWORD  # meshctl_env() copies os.environ
                runs = []
                for i in (1, 2):
                    r = self.meshctl("awx", "sync", "-o", "json", log_name=f"awx-sync-{i}.log", mesh=mesh,
                                     reaches_nodes=False)
                    if r.returncode != 0:
                        raise labkit.LabError(f"meshctl awx sync #{i} failed (exit {r.returncode}): "
                                              f"{r.stderr.strip()[-800:]}")
                    runs.append(json.loads(r.stdout))
                if runs[1]["done"]:
                    raise labkit.LabError(f"a second awx sync still wrote: {runs[1]['done']}")
                want = {h.name: ("execution" if h.role == "execution" else "hop") for h in self.hosts
                        if h.role in ("execution", "hop")}
                got = {i.hostname: i.node_type for i in awx.mesh.instances.values() if not i.managed}
                if got != want:
                    raise labkit.LabError(f"AWX describes {got}, the lab runs {want}")
                awx_peers = sorted(s["tcp-peer"]["address"].split(":")[0] for s in awx.receptor_config()
                                   if "tcp-peer" in s)
            self.step_host = "awx01"
            conf = yaml.safe_load(self.ssh("awx01", "cat /etc/receptor/receptor.conf").stdout) or []
            by_ip = {ip: name for name, nets in self.ips.items() for ip in nets.values()}
            ours = sorted(by_ip.get(s["tcp-peer"]["address"].rsplit(":", 1)[0], "?") for s in conf
                          if "tcp-peer" in s)
            if awx_peers != ours:
                raise labkit.LabError(f"AWX's control node would dial {awx_peers}; awx01 dials {ours}")
            self.log(f"    AWX registered {len(got)} nodes in {len(runs[0]['done'])} writes; a second sync wrote "
                     f"nothing; its control node would dial {awx_peers}, as awx01 does")

    def idempotence(self, result: dict) -> None:
        changed = {h["node"]: h["changed"] for h in result["hosts"] if h["changed"]}
        if changed:
            self.step_host = ", ".join(changed)
            raise labkit.LabError(f"second provision changed something: {changed}")
        trips = {h["node"]: h["round_trips"] for h in result["hosts"]}
        self.log(f"    idempotent: 0 changed on {len(trips)} hosts; round trips per host: {trips}")

    def down(self) -> None:
        env = self.env or labkit.prepare_host(self.work)
        self._close_ssh_masters()
        labkit.remove_prefixed(PREFIX, env=env)
        # The lab's CA and meshctl's host cache go with the lab: a new lab gets a new mesh.
        shutil.rmtree(self.work / "state", ignore_errors=True)
        shutil.rmtree(self.work / "cache", ignore_errors=True)

    def _close_ssh_masters(self) -> None:
        """Stop the ControlMaster processes our ssh_config started (ssh -O exit
        asks each master to end itself; nothing else is signalled)."""
        cfg = self.work / "ssh_config"
        if not cfg.exists():
            return
        for h in self.hosts:
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                subprocess.run(["ssh", "-F", str(cfg), "-O", "exit", h.name], capture_output=True, timeout=10)

    def how_to_ssh(self) -> str:
        cfg = self.work / "ssh_config"
        names = " ".join(h.name for h in self.hosts)
        return (f"lab is up. ssh in with: ssh -F {cfg} <host>   (hosts: {names})\n"
                f"meshctl: meshctl plan -f {self.work / 'mesh.yml'} --known-hosts {self.work / 'known_hosts'}\n"
                f"remove it with: nox -s lab -- down   (or python lab/lab.py down)")


def run_podman(args: argparse.Namespace) -> int:
    binary = args.receptor_binary or os.environ.get("MESHLAB_RECEPTOR_BINARY") or None
    if binary and not Path(binary).is_file():
        print(f"lab: --receptor-binary {binary}: no such file", file=sys.stderr)
        return 1
    from labkit.receptor import Receptor, obtain

    if binary:
        receptor = Receptor(Path(binary).resolve(), source=f"--receptor-binary {binary}")
    else:
        receptor = obtain(pin=args.receptor_version)
    print(f"lab: {receptor.summary()}")
    lab = Lab(extra_exec=args.exec_nodes, receptor_binary=str(receptor.path) if receptor.path else None)
    if receptor.path is None:
        print(NOT_PROVEN_BANNER)
    ok = False
    try:
        lab.up()
        before_exec02 = lab.snapshot("exec02")
        lab.provision(1)
        lab.third_party_backend()
        lab.preflight()
        lab.pull_without_registry_config()
        lab.enable_registries()
        lab.provision("1b (registries)")
        lab.verify()
        lab.awx_side()
        lab.jobs()
        second = lab.provision(2)
        lab.idempotence(second)
        lab.renew_certificates()
        lab.idempotence(lab.provision(3))
        lab.day2(before_exec02)
        lab.secrets_check()
        ok = True
    except (labkit.LabError, subprocess.TimeoutExpired, OSError) as exc:
        where = f" [host {lab.step_host}]" if lab.step_host else ""
        print(f"lab: step '{lab.step_name}'{where} failed: {exc}", file=sys.stderr)
        print(f"lab: logs are in {lab.logs}", file=sys.stderr)
    finally:
        if args.keep and lab.env:
            print(lab.how_to_ssh())
        elif lab.env:
            with lab.step("teardown"):
                lab.down()
    total = sum(lab.timings.values())
    print("lab: " + ", ".join(f"{k} {v:.1f}s" for k, v in lab.timings.items()) + f"; total {total:.1f}s")
    print(f"lab: {receptor.summary()}")
    if receptor.path is None:
        print(NOT_PROVEN_BANNER)
    print(("lab: PASSED" if receptor.path else "lab: PASSED (degraded: receptor never ran)") if ok else "lab: FAILED")
    return 0 if ok else 1


NOT_PROVEN_BANNER = """\
lab: ******************************************************************************
lab: DEGRADED: no receptor binary, so receptor never ran. Provisioned with
lab: install: none, start: false. NOT proven by this run: receptor accepting the
lab: rendered configs, the mesh's routes and TLS, AWX's signed health check and jobs
lab: through the mesh, reload/restart on a live daemon, jobs surviving restarts.
lab: Get one with Go and the module proxy, or pass --receptor-binary PATH.
lab: ******************************************************************************"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="lab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", nargs="?", default="run", choices=["run", "down"])
    ap.add_argument("--keep", action="store_true", help="leave the lab running and print how to ssh in")
    ap.add_argument("--backend", choices=["podman", "vagrant"], default="podman")
    ap.add_argument("--exec-nodes", type=int, default=0, metavar="N",
                    help="extra execution nodes on ctl (scale runs)")
    ap.add_argument("--receptor-binary", metavar="PATH", default=None,
                    help="a receptor binary to install (install: local) and start on every node")
    ap.add_argument("--receptor-version", metavar="TAG", default=None,
                    help="build this receptor tag (e.g. v1.6.9) instead of the newest release that builds")
    args = ap.parse_args(argv)
    if args.backend == "vagrant":
        import vagrant_backend

        try:
            return vagrant_backend.main(args)
        except vagrant_backend.VagrantUnavailable as exc:
            print(f"lab: {exc}", file=sys.stderr)
            return 1
    if args.action == "down":
        try:
            Lab().down()
        except labkit.LabError as exc:
            print(f"lab: {exc}", file=sys.stderr)
            return 1
        print("lab: removed")
        return 0
    try:
        return run_podman(args)
    except labkit.LabError as exc:  # host preparation problems: say what to install
        print(f"lab: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
