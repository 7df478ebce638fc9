from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The lab toolkit lives outside the package (lab/labkit); tests reuse it.
sys.path.insert(0, str(ROOT / "lab"))


@pytest.fixture
def plugins():
    from meshctl.core.plugins import create_plugin_manager

    return create_plugin_manager(autoload=False)


@pytest.fixture(autouse=True, scope="session")
def _private_state_dir(tmp_path_factory):
    """Keep mesh CAs and generated keys out of the user's ~/.local/share."""
    import os

    path = tmp_path_factory.mktemp("meshctl-state")
    old = os.environ.get("MESHCTL_STATE_DIR")
    os.environ["MESHCTL_STATE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("MESHCTL_STATE_DIR", None)
    else:
        os.environ["MESHCTL_STATE_DIR"] = old
