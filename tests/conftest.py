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
    from meshctl.testing import private_state

    with private_state(tmp_path_factory) as path:
        yield path
