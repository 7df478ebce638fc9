"""mesh_command: a third party's command gets the built-ins' options and host
selection, and the mistakes a plugin can make name the plugin."""

from __future__ import annotations

import json
import types

import click
import pytest
from click.testing import CliRunner

from meshctl.core.cli import build_cli
from meshctl.core.errors import PluginError, UsageError
from meshctl.plugin import CommandRun, hookimpl, mesh_command
from meshctl.testing import SEED_TOPOLOGY, plugin_manager


def _plugin(name: str, register) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.meshctl_register_commands = hookimpl(register)
    return mod


def _nodes_command(cli):
    @mesh_command(cli, "nodes")
    @click.option("--upper", is_flag=True)
    def nodes(cmd: CommandRun, upper: bool) -> None:
        """List the nodes this run would reach."""
        names = [n.name.upper() if upper else n.name for n in cmd.nodes()]
        if cmd.output == "json":
            cmd.echo_json({"nodes": names, "forks": cmd.run.forks, "ssh_config": str(cmd.run.ssh_config)})
        else:
            click.echo(" ".join(names))


def meshctl_register_commands(cli):
    _nodes_command(cli)


@pytest.fixture
def cli():
    return build_cli(plugin_manager(_plugin("thirdparty", meshctl_register_commands)))


def test_plugin_command_has_the_builtin_options(cli):
    own = {p.name for p in cli.commands["nodes"].params}
    builtin = {p.name for p in cli.commands["preflight"].params}
    assert builtin <= own, builtin - own
    assert {"limit", "forks", "ssh_config", "known_hosts", "output", "file", "upper"} <= own


def test_plugin_command_selects_hosts_like_the_builtins(cli, tmp_path):
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text("Host *\n  User root\n")
    r = CliRunner().invoke(cli, ["nodes", "-f", str(SEED_TOPOLOGY), "-o", "json", "--forks", "3",
                                 "--ssh-config", str(ssh_config), "--limit", "exec01.example.com"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == {"nodes": ["exec01.example.com"], "forks": 3, "ssh_config": str(ssh_config)}
    r = CliRunner().invoke(cli, ["nodes", "-f", str(SEED_TOPOLOGY), "--upper"])
    assert r.stdout.split() == ["HOP01.EXAMPLE.COM", "EXEC01.EXAMPLE.COM"]


def test_unknown_and_unmanaged_limits_are_errors(cli):
    # The same UsageError (exit 2 from main) as the built-in commands raise.
    r = CliRunner().invoke(cli, ["nodes", "-f", str(SEED_TOPOLOGY), "--limit", "nope"])
    assert isinstance(r.exception, UsageError) and r.exception.exit_code == 2
    assert str(r.exception) == "--limit: unknown node(s): nope"
    r = CliRunner().invoke(cli, ["nodes", "-f", str(SEED_TOPOLOGY), "--limit", "awx-task"])
    assert str(r.exception) == "--limit: node(s) not managed by meshctl: awx-task"


def test_an_own_option_named_like_a_run_option_names_the_plugin():
    def register(cli):
        @mesh_command(cli, "clash")
        @click.option("--forks", type=int)
        def clash(cmd, forks):
            pass

    with pytest.raises(PluginError, match=r"plugin 'clashing' .*command 'clash': parameter 'forks' is one of"):
        build_cli(plugin_manager(_plugin("clashing", register)))


def test_replacing_a_builtin_command_names_the_plugin():
    def register(cli):
        @cli.command("validate")
        def validate():
            pass

    with pytest.raises(PluginError, match=r"plugin 'usurper' .*adds command 'validate', which meshctl already has"):
        build_cli(plugin_manager(_plugin("usurper", register)))


def test_a_crash_while_adding_commands_names_the_plugin():
    def register(cli):
        raise RuntimeError("boom")

    with pytest.raises(PluginError, match=r"plugin 'broken' .*failed to add its commands: RuntimeError: boom"):
        build_cli(plugin_manager(_plugin("broken", register)))
