"""Reading input files and writing output files safely.

Input: only regular files, never more than a cap. A FIFO would block ``open()``
forever and ``/dev/zero`` or a sparse multi-GB file would be read until memory runs
out, so files are opened non-blocking, checked with ``fstat`` and read up to the cap.

Output: written to a temporary file in the same directory and renamed over the
target, so a full disk, a file-size limit or an interrupt never leaves a
half-written file behind.
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import stat
import tarfile
import tempfile
from pathlib import Path

from meshctl.core.errors import MeshctlError, UsageError

KiB = 1 << 10
MiB = 1 << 20

#: Caps per kind of input; far above any real file, far below exhausting memory.
TOPOLOGY_LIMIT = 32 * MiB
BUNDLE_LIMIT = 16 * MiB
BUNDLE_MEMBERS = 1000
BUNDLE_UNPACKED_LIMIT = 64 * MiB
SECRET_LIMIT = 1 * MiB

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def shown(path: str | os.PathLike[str]) -> str:
    """A path for a one-line message: as it is, or quoted when it holds a newline
    or another control character."""
    text = os.fspath(path)
    return text if text.isprintable() else repr(text)


def _size(n: int) -> str:
    if n >= MiB and n % MiB == 0:
        return f"{n // MiB} MiB"
    if n >= KiB and n % KiB == 0:
        return f"{n // KiB} KiB"
    return f"{n} bytes"


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def read_bytes(path: str | os.PathLike[str], what: str, limit: int, missing: str | None = None) -> bytes:
    """The content of the regular file ``path``, at most ``limit`` bytes, or a
    :class:`UsageError` ``"PATH: the WHAT is a FIFO, not a regular file"`` (or
    larger than the cap, missing, unreadable). ``missing`` replaces the message
    for a file that does not exist."""
    p = os.fspath(path)
    try:
        # O_NONBLOCK: opening a FIFO with no writer returns at once instead of waiting.
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise UsageError(f"{shown(p)}: {missing or f'no such {what}'}") from None
    except OSError as exc:
        raise UsageError(f"{shown(p)}: cannot read the {what}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"{shown(p)}: the {what} is {_kind(st.st_mode)}, not a regular file")
        if st.st_size > limit:
            raise UsageError(f"{shown(p)}: the {what} is larger than {_size(limit)}")
        chunks: list[bytes] = []
        got = 0
        # st_size is not to be trusted (/proc files say 0): read at most limit + 1.
        while got <= limit:
            chunk = os.read(fd, min(limit + 1 - got, MiB))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        if got > limit:
            raise UsageError(f"{shown(p)}: the {what} is larger than {_size(limit)}")
        return b"".join(chunks)
    except OSError as exc:
        raise UsageError(f"{shown(p)}: cannot read the {what}: {exc.strerror}") from None
    finally:
        os.close(fd)


def read_text(path: str | os.PathLike[str], what: str, limit: int, missing: str | None = None) -> str:
    """:func:`read_bytes` decoded as UTF-8; a leading BOM is dropped (it is not text)."""
    data = read_bytes(path, what, limit, missing)
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{shown(path)}: not UTF-8 text ({exc.reason})") from None


def open_tar(data: bytes, path: str | os.PathLike[str], what: str = "bundle",
             members: int = BUNDLE_MEMBERS, unpacked: int = BUNDLE_UNPACKED_LIMIT) -> tarfile.TarFile:
    """``data`` (read with :func:`read_bytes`) opened as a tar archive (any compression),
    after checking it has at most ``members`` members of at most ``unpacked`` bytes in
    all: a gzip bomb is refused before any member is extracted."""
    p = os.fspath(path)
    try:
        tar = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")  # noqa: SIM115 (returned open)
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise UsageError(f"{shown(p)}: the {what} is not a tar archive ({exc})") from None
    count = total = 0
    try:
        # TarFile.next() reads one header at a time, so a bomb stops at the cap.
        while (info := tar.next()) is not None:
            count += 1
            total += max(info.size, 0)
            if count > members:
                raise UsageError(f"{shown(p)}: the {what} has more than {members} members")
            if total > unpacked:
                raise UsageError(f"{shown(p)}: the {what} unpacks to more than {_size(unpacked)}")
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        tar.close()
        raise UsageError(f"{shown(p)}: the {what} is a damaged tar archive ({exc})") from None
    except BaseException:
        tar.close()
        raise
    return tar


def secret_file_problem(path: str | os.PathLike[str], what: str = "secret file") -> tuple[str, str] | None:
    """What is wrong with a file holding a secret, as ``(severity, message)``: an error
    when it is not a regular file (a directory, a FIFO...), a warning when group or
    others may access it. None when it is fine or missing (reading it says so)."""
    p = os.fspath(path)
    try:
        st = os.stat(p)  # stat, not open: a FIFO must not block here either
    except FileNotFoundError:
        return None
    except OSError as exc:
        return "error", f"{shown(p)}: cannot read the {what}: {exc.strerror}"
    if not stat.S_ISREG(st.st_mode):
        return "error", f"{shown(p)}: the {what} is {_kind(st.st_mode)}, not a regular file"
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        return "warning", (f"{shown(p)}: the {what} is open to group or others (mode {mode:04o}): "
                           f"chmod 600 {shlex.quote(p)}")
    return None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike[str], data: bytes | str, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` all or nothing: a temporary file in the same
    directory renamed over ``path``. ``mode`` defaults to 0666 minus the umask.
    Raises :class:`UsageError` for a directory that does not exist or a target that
    is not a regular file, :class:`MeshctlError` when writing fails (disk full...)."""
    p = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    parent = p.parent
    if not parent.is_dir():
        raise UsageError(f"{shown(p)}: cannot write: directory {shown(parent)} does not exist")
    with contextlib.suppress(FileNotFoundError):
        st = os.stat(p)
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"{shown(p)}: cannot write: it is {_kind(st.st_mode)}, not a regular file")
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{p.name[:100]}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o666 & ~_umask() if mode is None else mode)
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
        tmp = None
    except OSError as exc:
        raise MeshctlError(f"{shown(p)}: cannot write: {exc.strerror or exc}") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


__all__ = ["atomic_write", "open_tar", "read_bytes", "read_text", "secret_file_problem", "shown"]
