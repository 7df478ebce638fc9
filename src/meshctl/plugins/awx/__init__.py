"""AWX from the same mesh.yml: ``meshctl awx plan`` shows how AWX's instances,
receptor addresses, peers and instance groups differ from the topology, and
``meshctl awx sync`` makes AWX match (idempotent; records AWX manages itself are
never touched)."""

from __future__ import annotations

from meshctl.plugin import (
    CheckResult,
    TopologySection,
    hookimpl,
    report_secret_sources,
    resolve_path,
)
from meshctl.plugins.awx.model import AwxNode, AwxSection


@hookimpl
def meshctl_register_topology_sections(register):
    register(TopologySection("awx", AwxSection, "mesh", "the AWX (or AAP controller) that runs jobs on the mesh"))
    register(TopologySection("awx", AwxNode, "node", "what AWX records about this node"))


@hookimpl
def meshctl_validate_topology(topology, report):
    awx: AwxSection | None = topology.sections.get("awx")
    if awx is None:
        return
    report_secret_sources(topology, "awx", "token", ("awx",), report, env=awx.token_env, file=awx.token_file,
                          value=awx.token)
    report_secret_sources(topology, "awx", "password", ("awx",), report, env=awx.password_env,
                          file=awx.password_file, value=awx.password)
    if not awx.verify:
        report(("awx", "verify"), "awx: verify: false sends the AWX token to whoever answers", "warning")
    if awx.url.startswith("http://"):
        report(("awx", "url"), "awx: http:// sends the AWX token in clear text", "warning")
    if awx.ca_file is not None and not resolve_path(topology, awx.ca_file).is_file():
        report(("awx", "ca_file"), f"awx: ca_file {resolve_path(topology, awx.ca_file)} does not exist")
    from meshctl.plugins.awx.plan import wanted

    for note in wanted(topology)[1]:
        report(note.path, note.message, note.severity)


@hookimpl
def meshctl_cli_options(register):
    import click

    register("provision", click.Option(["--awx"], is_flag=True,
                                       help="Register the mesh in AWX first (awx sync), then provision, then "
                                            "wait for AWX's health check of every execution node (awx health)."))
    register("status", click.Option(["--awx"], is_flag=True,
                                    help="Show AWX's record of each node beside meshctl's (node_state, capacity, "
                                         "version, errors) and where the two disagree."))
    register("remove", click.Option(["--awx"], is_flag=True,
                                    help="Deprovision the nodes in AWX first and wait until AWX lets go of them; "
                                         "the hosts stay as they are if it does not."))
    register("remove", click.Option(["--awx-timeout"], type=click.FloatRange(1, 3600), default=None,
                                    help="Seconds --awx waits for AWX [default: awx.deprovision_timeout, 600]."))


@hookimpl
def meshctl_before_provision(topology, options):
    """``provision --awx`` registers the nodes first, as AWX's own flow does."""
    if not options.get("awx"):
        return None
    from meshctl.plugins.awx.provision import before_provision

    return before_provision(topology)


@hookimpl
def meshctl_after_provision(topology, results, options):
    """``provision --awx``: the hosts are in place; now AWX's verdict."""
    if not options.get("awx"):
        return None
    from meshctl.plugins.awx.provision import after_provision

    return after_provision(topology)


@hookimpl
def meshctl_install_bundle(topology, node_id):
    if topology.sections.get("awx") is None:
        return None
    from meshctl.plugins.awx.provision import install_bundle

    return install_bundle(topology, node_id)


@hookimpl
def meshctl_status_view(topology, nodes, rows, options):
    """``status --awx``: AWX's record of each node beside meshctl's."""
    if not options.get("awx"):
        return None
    from meshctl.plugins.awx.client import client_for
    from meshctl.plugins.awx.status import status_view
    from meshctl.plugins.awx.sync import survey

    return status_view(survey(client_for(topology), topology), topology, nodes, rows)


@hookimpl
def meshctl_before_remove(topology, nodes, options):
    """``remove --awx``: AWX lets go of the nodes before their hosts are cleaned."""
    if not options.get("awx"):
        if options.get("awx_timeout") is not None:  # a wait asked for, for a step not asked for
            return [CheckResult(False, "--awx-timeout is for --awx: add --awx, or leave the timeout out")]
        return None
    from meshctl.plugins.awx.remove import before_remove

    return before_remove(topology, nodes, options.get("awx_timeout"))


@hookimpl
def meshctl_register_commands(cli):
    from meshctl.plugins.awx.commands import register

    register(cli)
