"""What ``meshctl remove`` must leave behind: a listing of the places meshctl
writes, taken before provisioning and after removal, minus what the packages it
installed (and their maintainer scripts) put there."""

from __future__ import annotations

import shlex
from collections.abc import Iterable

PATHS = "/etc /opt /usr/bin /usr/lib/systemd /var/lib/meshctl /var/lib/systemd/linger /var/log/receptor /home"
LISTING = (f"find {PATHS} -xdev 2>/dev/null | grep -v -e '^/etc/ssh/' -e '^/etc/ld.so.cache' "
           "-e '^/etc/alternatives' | sort")

# Made by the OS for the packages meshctl installed, not by meshctl: podman's network
# state, netbase, shadow's backups from usermod, directories of enablement links.
NOT_OURS = {"/etc/networks", "/etc/subuid-", "/etc/subgid-"}
NOT_OURS_PREFIXES = ("/etc/cni",)
NOT_OURS_SUFFIXES = (".target.wants",)

# Prints the paths no package owns. Debian 12 merged /usr but dpkg records many paths
# under /lib: both spellings are tried; enablement links count by their target.
_UNOWNED = (
    'for p in "$@"; do '
    'if dpkg -S "$p" >/dev/null 2>&1 || dpkg -S "${p#/usr}" >/dev/null 2>&1; then continue; fi; '
    'if [ -L "$p" ]; then t=$(readlink -f "$p"); '
    'if dpkg -S "$t" >/dev/null 2>&1 || dpkg -S "${t#/usr}" >/dev/null 2>&1; then continue; fi; fi; '
    'echo "$p"; done; true'
)


def unowned_command(paths: Iterable[str]) -> str:
    """A shell command printing which of ``paths`` no installed package accounts for."""
    return "sh -c " + shlex.quote(_UNOWNED) + " sh " + " ".join(shlex.quote(p) for p in sorted(paths))


def meshctl_leftovers(unowned: Iterable[str]) -> list[str]:
    return sorted(p for p in unowned if p not in NOT_OURS and not p.startswith(NOT_OURS_PREFIXES)
                  and not p.endswith(NOT_OURS_SUFFIXES))
