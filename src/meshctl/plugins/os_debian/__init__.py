"""OS plugin for Debian 12/13 and Ubuntu 22.04/24.04 (apt)."""

from __future__ import annotations

from meshctl.core.hookspecs import hookimpl
from meshctl.core.types import OSFamily, OSRelease

SUPPORTED = {"debian": {"12", "13"}, "ubuntu": {"22.04", "24.04"}}


def detect(release: OSRelease) -> bool:
    if release.id in SUPPORTED:
        versions = SUPPORTED[release.id]
        return release.version_id in versions or release.major in versions
    return False


@hookimpl
def meshctl_register_os_families(register):
    register(
        OSFamily(
            name="debian",
            detect=detect,
            package_manager="apt",
            description="Debian and Ubuntu",
            supported="Debian 12, 13; Ubuntu 22.04, 24.04",
        )
    )
