"""OS plugin for the RHEL family (dnf): RHEL, CentOS Stream, Rocky, AlmaLinux,
Oracle Linux 8/9/10 and Fedora."""

from __future__ import annotations

from meshctl.core.hookspecs import hookimpl
from meshctl.core.types import OSFamily, OSRelease

EL_IDS = {"rhel", "centos", "rocky", "almalinux", "ol"}
EL_MAJORS = {"8", "9", "10"}


def detect(release: OSRelease) -> bool:
    if release.id == "fedora":
        return True
    is_el = release.id in EL_IDS or ("rhel" in release.id_like and release.id != "fedora")
    return is_el and release.major in EL_MAJORS


@hookimpl
def meshctl_register_os_families(register):
    register(
        OSFamily(
            name="rhel",
            detect=detect,
            package_manager="dnf",
            description="RHEL family",
            supported="RHEL, CentOS Stream, Rocky, AlmaLinux, Oracle Linux 8-10; Fedora",
        )
    )
