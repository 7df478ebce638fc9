"""Topology sections core provides: settings more than one plugin reads, so that
blocking one plugin (``-p no:NAME``) never makes another's keys unknown."""

from __future__ import annotations

from meshctl.core.hookspecs import hookimpl
from meshctl.core.oskit import FirewallSection
from meshctl.core.receptor import ReceptorSection
from meshctl.core.types import TopologySection


@hookimpl
def meshctl_register_topology_sections(register):
    register(TopologySection("receptor", ReceptorSection, scope="mesh",
                             description="service user, log level, start policy"))
    register(TopologySection("firewall", FirewallSection, scope="mesh",
                             description="open the receptor listener port (firewalld zone; manage: false to skip)"))
