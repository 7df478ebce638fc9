"""SSH transport over Fabric: jump-host chains, strict host keys, sudo, and errors
that name their cause for one host only.

Scripts travel on the channel's stdin (never on a command line, where ``ps`` would
show secrets) and run under ``sh -s``; output is streamed line by line.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable

import paramiko
from fabric import Config, Connection
from paramiko.ssh_exception import NoValidConnectionsError

from meshctl.core.errors import MeshctlError
from meshctl.core.sshsetup import (  # noqa: F401 (SSHOptions and fingerprint are imported from here)
    HostKeyStore,
    SSHOptions,
    TunedTransport,
    UnknownHostKey,
    default_known_hosts,
    fingerprint,
)
from meshctl.core.topology import Node, Topology


class UnreachableError(MeshctlError):
    """The host could not be reached or logged into; ``cause`` is one of
    dns, refused, timeout, auth, hostkey-unknown, hostkey-changed, jump, ssh, become."""

    def __init__(self, host: str, cause: str, detail: str):
        self.host, self.cause, self.detail = host, cause, detail
        super().__init__(f"{host}: {cause}: {detail}")


class RemoteError(MeshctlError):
    pass


class Session:
    """One node's SSH session. ``run`` counts round trips (remote commands)."""

    def __init__(self, node: Node, conn: Connection, opts: SSHOptions, label: str,
                 open_lock: threading.Lock | None = None):
        self.node = node
        self.conn = conn
        self.opts = opts
        self.label = label
        self.round_trips = 0
        # Shared with the pool: a node can be a target and another node's jump host.
        self._lock = open_lock or threading.Lock()

    @property
    def user(self) -> str:
        return self.conn.user

    def open(self) -> None:
        with self._lock:
            if self.conn.is_connected:
                return
            _open(self.conn, self.label)

    def _wrap(self, become: bool) -> tuple[str, str]:
        """The remote command and a stdin prefix for running a script under sh."""
        if not become or self.user == "root":
            return "sh -s", ""
        if self.opts.become_password is None:
            return "sudo -H -n sh -s", ""
        # sudo -S reads the password line only when it needs one; the marker loop
        # discards whatever is left of it so a password is never run as a command.
        marker = "__meshctl_script__"
        cmd = (
            "sudo -H -S -p '' sh -c 'while IFS= read -r l; do "
            f'[ "$l" = {marker} ] && break; done; exec sh -s\''
        )
        return cmd, f"{self.opts.become_password}\n{marker}\n"

    def _channel(self, become: bool | None) -> tuple[paramiko.Channel, str, bool]:
        self.open()
        if become is None:
            become = self.node.ssh.become if self.node.ssh.become is not None else True
        command, prefix = self._wrap(become)
        try:
            chan = self.conn.transport.open_session(timeout=self.opts.connect_timeout)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise UnreachableError(self.label, "ssh", f"cannot open a session: {exc}") from None
        chan.set_combine_stderr(True)
        chan.settimeout(5.0)
        chan.exec_command(command)
        return chan, prefix, become

    def _read(self, chan: paramiko.Channel, deadline: float, timeout: float, until: bytes | None = None,
              on_line: Callable[[str], None] | None = None) -> tuple[bytes, bool]:
        """Output until EOF, or until a line equal to ``until`` (then True, and the
        output before that line)."""
        chunks: list[bytes] = []
        pending = b""
        last_data = time.monotonic()
        while True:
            if time.monotonic() > deadline:
                chan.close()
                raise RemoteError(f"{self.label}: remote command timed out after {timeout:.0f}s")
            try:
                data = chan.recv(65536)
            except TimeoutError:
                if chan.exit_status_ready() and not chan.recv_ready():
                    self._check_lost(chan, last_data)
                    return b"".join(chunks), False
                continue
            if not data:
                self._check_lost(chan, last_data)
                return b"".join(chunks), False
            last_data = time.monotonic()
            chunks.append(data)
            if until is not None:
                joined = b"".join(chunks)
                head, sep, _rest = joined.partition(b"\n" + until + b"\n")
                if sep:
                    return head, True
                chunks = [joined]
            if on_line is not None:
                pending += data
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    on_line(line.decode("utf-8", "replace"))

    def _check_lost(self, chan: paramiko.Channel, last_data: float) -> None:
        """Raise when the channel ended because its connection died (no exit status
        came and the transport is gone), not because the command finished."""
        transport = chan.get_transport()
        if chan.exit_status != -1 or (transport is not None and transport.is_active()):
            return
        # paramiko reports an expired TCP_USER_TIMEOUT as a plain EOF; a connection
        # that carried nothing for that long stopped answering rather than closed.
        silent = time.monotonic() - last_data
        limit = self.opts.dead_peer_timeout
        cause, why = ("timeout", f"no answer for {silent:.0f}s (limit {limit:.0f}s)") if silent >= limit - 1 else (
            "ssh", "the connection was closed")
        raise UnreachableError(self.label, cause, f"connection lost mid-command: {why}; "
                               "the command may still be running on the host")

    def _finish(self, chan: paramiko.Channel, become: bool, output: str) -> int:
        rc = chan.recv_exit_status()
        chan.close()
        if become and self.user != "root" and rc == 1 and _sudo_refused(output):
            raise UnreachableError(self.label, "become", _sudo_refused(output))
        return rc

    def run(
        self,
        script: str,
        *,
        become: bool | None = None,
        timeout: float = 1800.0,
        on_line: Callable[[str], None] | None = None,
    ) -> tuple[int, str]:
        """Run ``script`` with ``sh -s`` (under sudo when becoming). Returns
        (exit code, combined output). Bounded by ``timeout`` seconds."""
        chan, prefix, become = self._channel(become)
        self.round_trips += 1
        payload = (prefix + script).encode()

        def feed() -> None:
            try:
                chan.sendall(payload)
                chan.shutdown_write()
            except (OSError, paramiko.SSHException):
                pass

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        raw, _ = self._read(chan, time.monotonic() + timeout, timeout, on_line=on_line)
        output = raw.decode("utf-8", "replace")
        rc = self._finish(chan, become, output)
        feeder.join(timeout=5)
        return rc, output

    def run_then(
        self,
        first: str,
        then: Callable[[str], str],
        *,
        become: bool | None = None,
        timeout: float = 300.0,
    ) -> tuple[str, int, str]:
        """Two round trips in one shell: run ``first``, hand its output to ``then``
        and run the script that returns, with the same ``sh -s``. Saves the host a
        session and a shell start. Returns (first output, exit code, second output).
        ``first`` must not read stdin (the second script follows on it)."""
        chan, prefix, become = self._channel(become)
        self.round_trips += 2
        marker = "@@meshctl-next-" + secrets.token_hex(8)
        deadline = time.monotonic() + timeout

        def send(script: str, until: bytes | None) -> tuple[bytes, bool]:
            # A broken channel makes the host unreachable (an error in ``then`` does not).
            try:
                chan.sendall(script.encode())
                if until is None:
                    chan.shutdown_write()
                return self._read(chan, deadline, timeout, until=until)
            except (OSError, paramiko.SSHException) as exc:
                raise UnreachableError(self.label, "ssh", f"{type(exc).__name__}: {exc}") from None

        try:
            raw, found = send(prefix + first + f"\nprintf '\\n%s\\n' '{marker}'\n", marker.encode())
            head = raw.decode("utf-8", "replace")
            if not found:  # the shell ended early: sudo refused, or it never started
                rc = self._finish(chan, become, head)
                raise RemoteError(f"{self.label}: the remote shell exited (exit {rc}): {head.strip()[-500:]}")
            raw, _ = send(then(head), None)
        except BaseException:
            chan.close()
            raise
        output = raw.decode("utf-8", "replace")
        return head, self._finish(chan, become, output), output

    def upload(self, files: list[tuple[str, str]]) -> str:
        """Copy local files into a fresh private directory on the host (one SFTP
        session, counted as one round trip); returns the directory. The apply script
        that uses it removes it."""
        self.open()
        self.round_trips += 1
        stage = f"/tmp/meshctl-stage-{secrets.token_hex(8)}"
        try:
            sftp = self.conn.client.open_sftp()
            try:
                sftp.mkdir(stage, mode=0o700)
                for local, name in files:
                    sftp.put(local, f"{stage}/{name}")
            finally:
                sftp.close()
        except (OSError, paramiko.SSHException) as exc:
            raise RemoteError(f"{self.label}: upload to {stage} failed: {exc}") from None
        return stage

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()


def _sudo_refused(output: str) -> str:
    low = output.lower()
    if "a password is required" in low or "a terminal is required" in low:
        return "sudo needs a password (use --ask-become-pass, or NOPASSWD sudo)"
    if "incorrect password" in low or "sorry, try again" in low:
        return "sudo refused the become password"
    if "is not in the sudoers file" in low or "not allowed to execute" in low:
        return "the ssh user may not use sudo on this host"
    return ""


def _open(conn: Connection, label: str) -> None:
    """Open ``conn`` (and its gateways), turning every failure into an
    :class:`UnreachableError` with one cause."""
    try:
        conn.open()
    except UnknownHostKey as exc:
        raise UnreachableError(
            label,
            "hostkey-unknown",
            f"host key of {exc.hostname} is not known ({exc.key.get_name()} {fingerprint(exc.key)}); "
            "verify it and add it to ~/.ssh/known_hosts, or rerun with --accept-new-host-keys",
        ) from None
    except paramiko.BadHostKeyException as exc:
        raise UnreachableError(
            label,
            "hostkey-changed",
            f"host key of {exc.hostname} CHANGED (now {fingerprint(exc.key)}, expected "
            f"{fingerprint(exc.expected_key)}); refusing to connect. If the host was reinstalled, "
            "remove the old key from known_hosts",
        ) from None
    except paramiko.AuthenticationException as exc:
        raise UnreachableError(label, "auth", f"authentication failed for user {conn.user!r}: {exc}") from None
    except socket.gaierror as exc:
        raise UnreachableError(label, "dns", f"cannot resolve {conn.host!r}: {exc.strerror}") from None
    except NoValidConnectionsError as exc:
        raise UnreachableError(label, "refused", f"connection to {conn.host}:{conn.port} refused: {exc}") from None
    except ConnectionRefusedError:
        raise UnreachableError(label, "refused", f"connection to {conn.host}:{conn.port} refused") from None
    except TimeoutError:
        raise UnreachableError(label, "timeout", f"no answer from {conn.host}:{conn.port}") from None
    except paramiko.ChannelException as exc:
        gw = conn.gateway.host if isinstance(conn.gateway, Connection) else "?"
        raise UnreachableError(
            label, "jump", f"jump host {gw} could not connect to {conn.host}:{conn.port}: {exc.text}"
        ) from None
    except UnreachableError:
        raise
    except paramiko.SSHException as exc:
        transport = conn.client.get_transport()
        saved = getattr(transport, "saved_exception", None) if transport else None
        # paramiko reports a stalled handshake as "No existing session"; no banner
        # was read when the transport never learnt the remote version.
        handshake_stalled = transport is not None and not getattr(transport, "remote_version", None)
        if "banner" in f"{exc} {saved}".lower() or handshake_stalled:
            # TCP connected, but nothing there completed an SSH handshake in time.
            raise UnreachableError(label, "timeout", f"{conn.host}:{conn.port} accepted the connection "
                                   "but sent no SSH banner in time") from None
        raise UnreachableError(label, "ssh", f"{type(exc).__name__}: {exc}") from None
    except (EOFError, OSError) as exc:
        raise UnreachableError(label, "ssh", f"{type(exc).__name__}: {exc}") from None


class TransportPool:
    """Builds one Fabric connection per node (and shares jump-host connections)."""

    def __init__(self, topology: Topology, opts: SSHOptions):
        self.topology = topology
        self.opts = opts
        self.keys = HostKeyStore(opts)
        self._conns: dict[str, Connection] = {}
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self._gw_locks: dict[str, threading.Lock] = {}
        self._fabric_config: Config | None = None

    def _config(self) -> Config:
        # One for all connections (Connection only reads it): building it reads and
        # parses the ssh_config files.
        if self._fabric_config is None:
            overrides = {"load_ssh_configs": True}
            if self.opts.ssh_config is not None:
                self._fabric_config = Config(runtime_ssh_path=str(self.opts.ssh_config), overrides=overrides)
            else:
                self._fabric_config = Config(overrides=overrides)
        return self._fabric_config

    def _connection(self, node: Node) -> Connection:
        if node.name in self._conns:
            return self._conns[node.name]
        gateway = None
        if node.ssh.via:
            gateway = self._connection(self.topology.node(node.ssh.via))
        s = node.ssh
        timeout = s.connect_timeout or self.opts.connect_timeout
        factory = functools.partial(TunedTransport, dead_peer_timeout=self.opts.dead_peer_timeout)
        kwargs: dict = {"banner_timeout": timeout, "auth_timeout": timeout, "transport_factory": factory}
        if s.key:
            kwargs["key_filename"] = [os.path.expanduser(s.key)]
        conn = Connection(
            host=node.ssh_host,
            user=s.user,
            port=s.port,
            config=self._config(),
            gateway=gateway,
            connect_timeout=timeout,
            connect_kwargs=kwargs,
        )
        # Fabric builds clients with AutoAddPolicy (including for ProxyJump gateways
        # from ssh_config); replace it on every hop of the chain.
        hop: object = conn
        while isinstance(hop, Connection):
            self.keys.apply(hop.client)
            hop = hop.gateway
        self._conns[node.name] = conn
        return conn

    def _lock_for(self, name: str) -> threading.Lock:
        return self._gw_locks.setdefault(name, threading.Lock())

    def session(self, node: Node) -> Session:
        with self._lock:
            if node.name not in self._sessions:
                conn = self._connection(node)
                chain = self.topology.via_chain(node)
                label = node.name if not chain else f"{node.name} (via {' -> '.join(n.name for n in chain)})"
                self._sessions[node.name] = Session(node, conn, self.opts, label, self._lock_for(node.name))
                for gw in chain:
                    self._lock_for(gw.name)
            session = self._sessions[node.name]
            chain = self.topology.via_chain(node)
        # Open gateways one at a time so parallel hosts share one jump connection.
        for gw in chain:
            gconn = self._conns[gw.name]
            with self._gw_locks[gw.name]:
                if not gconn.is_connected:
                    try:
                        _open(gconn, gw.name)
                    except UnreachableError as exc:
                        raise UnreachableError(
                            session.label, "jump", f"jump host {gw.name} unreachable: {exc.cause}: {exc.detail}"
                        ) from None
        return session

    def close(self) -> None:
        for s in self._sessions.values():
            s.close()
        for c in self._conns.values():
            with contextlib.suppress(Exception):
                c.close()
