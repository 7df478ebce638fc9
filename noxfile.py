"""Sessions: ``tests`` (pytest: unit + real sshd hosts), ``lint`` (ruff), ``lab``."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

LAB_PACKAGES = "lab/packages.txt"


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.5")
    session.run("ruff", "check", "src", "tests", "lab", "benchmarks", "noxfile.py", "examples", "scripts")


@nox.session
def tests(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    # Integration tests start real sshd hosts in podman: install the host
    # packages when we can (root on Debian); the tests skip with the reason otherwise.
    session.run("python", "lab/install_host_packages.py", external=True)
    session.run("pytest", *session.posargs)


@nox.session
def lab(session: nox.Session) -> None:
    """Build the lab, provision it with meshctl, verify, re-provision, tear down.

    ``nox -s lab -- --keep`` leaves it running; ``nox -s lab -- down`` removes it.
    """
    session.install("-e", ".[test]")
    session.run("python", "lab/install_host_packages.py", external=True)
    session.run("python", "lab/lab.py", *session.posargs)
