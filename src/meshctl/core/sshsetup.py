"""SSH connection setup: options, host-key stores and policies (OpenSSH's
strict and accept-new), and the paramiko transport tuned for many small packets."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path

import paramiko


def default_known_hosts() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(base) / "meshctl" / "known_hosts"


_known_hosts_lock = threading.Lock()


class UnknownHostKey(Exception):
    def __init__(self, hostname: str, key: paramiko.PKey):
        self.hostname, self.key = hostname, key


class _RejectUnknown(paramiko.MissingHostKeyPolicy):
    def missing_host_key(self, client, hostname, key):  # noqa: D401
        raise UnknownHostKey(hostname, key)


class _AcceptNew(paramiko.MissingHostKeyPolicy):
    """Like OpenSSH ``StrictHostKeyChecking=accept-new``: record unknown keys in
    meshctl's known_hosts; a changed key still fails (paramiko raises BadHostKey)."""

    def __init__(self, path: Path):
        self.path = path

    def missing_host_key(self, client, hostname, key):
        with _known_hosts_lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="ascii") as fh:
                fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
            os.chmod(self.path, 0o600)
            client.get_host_keys().add(hostname, key.get_name(), key)  # shared by all clients


def fingerprint(key: paramiko.PKey) -> str:
    import base64
    import hashlib

    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


@dataclass
class SSHOptions:
    known_hosts: Path = field(default_factory=default_known_hosts)
    accept_new_host_keys: bool = False
    ssh_config: Path | None = None
    become_password: str | None = field(default=None, repr=False)
    connect_timeout: float = 15.0
    #: Seconds the host may leave sent data unacknowledged before its connection counts
    #: as lost; keepalives make an idle connection carry data, so a cut is noticed
    #: while a long remote command prints nothing (else Linux retries ~15 minutes).
    dead_peer_timeout: float = 60.0


class HostKeyStore:
    """Host keys from ~/.ssh/known_hosts plus meshctl's own file, parsed once and
    shared by every client (parsing per connection grows with hosts x keys)."""

    def __init__(self, opts: SSHOptions):
        self.opts = opts
        self._loaded: tuple[paramiko.HostKeys, paramiko.HostKeys] | None = None
        self._lock = threading.Lock()

    def _load(self) -> tuple[paramiko.HostKeys, paramiko.HostKeys]:
        with self._lock:
            if self._loaded is None:
                system = paramiko.HostKeys()
                with contextlib.suppress(OSError, paramiko.SSHException):
                    system.load(os.path.expanduser("~/.ssh/known_hosts"))
                own = paramiko.HostKeys()
                if self.opts.known_hosts.exists():
                    with _known_hosts_lock:
                        own.load(str(self.opts.known_hosts))
                self._loaded = (system, own)
            return self._loaded

    def apply(self, client: paramiko.SSHClient) -> None:
        # SSHClient has no setter for its key stores; these two attributes are what
        # load_system_host_keys()/load_host_keys() fill, since paramiko 1.x.
        client._system_host_keys, client._host_keys = self._load()
        policy = _AcceptNew(self.opts.known_hosts) if self.opts.accept_new_host_keys else _RejectUnknown()
        client.set_missing_host_key_policy(policy)


class TunedTransport(paramiko.Transport):
    # AES-GCM first: its tag is checked inside cryptography, where an HMAC is
    # compared byte by byte in Python for every packet. Servers without it still
    # get the usual list.
    _preferred_ciphers = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com") + tuple(
        c for c in paramiko.Transport._preferred_ciphers if "gcm" not in c)

    def __init__(self, sock, *args, dead_peer_timeout: float = 60.0, **kwargs):
        # Request/response traffic of small packets: with Nagle's algorithm each
        # one after the first waits for the server's delayed ACK (40 ms on Linux),
        # several times per command. A jump host's channel is no socket.
        if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if hasattr(socket, "TCP_USER_TIMEOUT"):  # Linux: abort when data stays unacknowledged
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(dead_peer_timeout * 1000))
        super().__init__(sock, *args, **kwargs)
        # Through a jump host this probes the whole chain: the jump host's own
        # socket carries the keepalive and expires.
        self.set_keepalive(max(1, int(min(15.0, dead_peer_timeout / 2))))
