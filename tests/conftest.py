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
