"""A bounded exclusive lock on a cache directory shared by parallel runs."""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Iterator
from pathlib import Path

from labkit.errors import LabError


@contextlib.contextmanager
def locked(path: Path, timeout: float, error: type[Exception] = LabError) -> Iterator[None]:
    """Hold ``.<name>.lock`` beside ``path``; give up with ``error`` after ``timeout`` s."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.parent / f".{path.name}.lock"
    with open(lock, "w") as fh:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise error(f"{lock}: still locked by another run after {timeout:.0f} s") from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
