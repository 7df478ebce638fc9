from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The lab toolkit lives outside the package (lab/labkit); tests reuse it.
sys.path.insert(0, str(ROOT / "lab"))


@pytest.fixture
def plugins():
    from meshctl.testing import plugin_manager

    return plugin_manager()


@pytest.fixture(autouse=True, scope="session")
def _private_state_dir(tmp_path_factory):
    """Keep mesh CAs, generated keys and host caches out of the user's home."""
    import os

    path = tmp_path_factory.mktemp("meshctl-state")
    saved = {k: os.environ.get(k) for k in ("MESHCTL_STATE_DIR", "MESHCTL_CACHE_DIR")}
    os.environ["MESHCTL_STATE_DIR"] = str(path)
    os.environ["MESHCTL_CACHE_DIR"] = str(tmp_path_factory.mktemp("meshctl-cache"))
    yield path
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
