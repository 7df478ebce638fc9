"""``meshctl certs issue|status|renew|rotate-ca`` and ``meshctl import awx-bundle``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from meshctl.plugin import (
    CommandRun,
    EngineSettings,
    Service,
    UsageError,
    atomic_write,
    inspect_cert,
    mesh_command,
    print_json,
    print_summary,
    summary_counts,
)
from meshctl.plugin import (
    facts as F,
)
from meshctl.plugin import (
    receptor as R,
)
from meshctl.plugins.cert_backends import settings as S


def _cert_ops_only(op: Any) -> bool:
    from meshctl.plugins.cert_backends.ops import NodeCertificate

    return isinstance(op, (NodeCertificate, Service)) or op.id in (f"file:{R.CA_FILE}", "cmd:restorecon")


def _nodes(cmd: CommandRun, node_opt: tuple[str, ...]) -> Any:
    names = [n for v in node_opt for n in v.split(",") if n]
    return cmd.nodes(",".join(names) if names else None)


#: certs commands plan certificate operations only.
CERTS_ONLY = EngineSettings(op_filter=_cert_ops_only)


def register(cli: click.Group) -> None:
    @cli.group("certs")
    def certs() -> None:
        """Node certificates: issue offline, status, renew, rotate the mesh CA."""

    @mesh_command(certs, "issue", reaches_nodes=False, output=False)
    @click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
                  help="Directory for <node>.crt, <node>.key and ca.crt.")
    @click.option("--node", "node_opt", multiple=True, help="Only these nodes (repeatable, or comma separated).")
    def issue(cmd: CommandRun, out: Path, node_opt: tuple[str, ...]) -> None:
        """Issue certificates offline (keys made here), e.g. for nodes meshctl does not reach."""
        from meshctl.plugins.cert_backends import backend_for
        from meshctl.plugins.cert_backends.backends import write_private

        state, topo = cmd.state, cmd.topology
        nodes = _nodes(cmd, node_opt)
        # Issue everything in memory first: a node that fails leaves no files of the others.
        issued, trust = [], None
        for node in nodes:
            backend = backend_for(state.plugins, topo, node)
            eff = S.effective(topo, node)
            # The backend's certificate is checked, and its errors name its plugin.
            key_pem, cert_pem = backend.issue(node.name, S.node_addresses(node), eff.key_type, eff.validity_days)
            trust = backend.trust_bundle()
            issued.append((node.name, key_pem, cert_pem))
        out.mkdir(parents=True, exist_ok=True)
        for name, key_pem, cert_pem in issued:
            write_private(out / f"{name}.key", key_pem)
            atomic_write(out / f"{name}.crt", cert_pem)
            state.out.print(f"{name}: {out / (name + '.crt')}, {out / (name + '.key')} (0600)")
        if trust is not None:
            atomic_write(out / "ca.crt", trust)
            state.out.print(f"CA: {out / 'ca.crt'}")

    @mesh_command(certs, "status")
    @click.option("--warn-days", type=click.IntRange(0, 36500), default=30, show_default=True,
                  help="Warn when a certificate expires within this many days.")
    def status(cmd: CommandRun, warn_days) -> None:
        """Read each node's certificate: names, NodeID, issuer, expiry, chain and key."""
        from meshctl.plugins.cert_backends import backend_for

        state, topo = cmd.state, cmd.topology
        nodes = cmd.nodes()
        results = cmd.engine(CERTS_ONLY).facts(nodes)
        rows, bad = [], 0
        for node, r in zip(nodes, results, strict=True):
            row: dict[str, Any] = {"node": node.name}
            if r.recorded is None:
                row.update(status="unreachable" if r.status == "unreachable" else "failed", error=r.error)
                bad += 1
                rows.append(row)
                continue
            facts = r.recorded["facts"]
            cert = facts.get(f"file:{R.node_cert(node.name)}", {})
            pem = F.decode_content(cert) if cert.get("kind") == "file" else None
            if pem is None:
                row.update(status="missing", error=f"no certificate at {R.node_cert(node.name)}")
                bad += 1
                rows.append(row)
                continue
            key = facts.get(f"pubkey:{R.node_key(node.name)}", {})
            trust = backend_for(state.plugins, topo, node).trust_bundle()
            st = inspect_cert(pem, trust, key.get("pem", "").encode() or None)
            problems = st.ok(node.name, S.node_addresses(node), 0)
            row.update(subject=st.subject_cn, names=st.dns_names + st.ip_addresses, node_ids=st.node_ids,
                       issuer=st.issuer, serial=format(st.serial, "x"), not_after=st.not_after.isoformat(), days_left=round(st.days_left, 1),
                       chain_ok=st.chain_ok, key_matches=st.key_matches, problems=problems)
            if problems:
                row["status"] = "problem"
                bad += 1
            elif st.days_left < warn_days:
                row["status"] = "warn"
            else:
                row["status"] = "ok"
            rows.append(row)
        if cmd.output == "json":
            print_json({"command": "certs status", "mesh": topo.mesh, "nodes": rows})
        else:
            _print_status(state, rows, warn_days)
        if bad:
            cmd.exit(1)

    @mesh_command(certs, "renew")
    @click.option("--within", type=click.IntRange(0, 36500), default=None,
                  help="Reissue certificates expiring within DAYS [default: certificates.renew_within_days].")
    @click.option("--node", "node_opt", multiple=True, help="Only these nodes.")
    @click.option("--force", is_flag=True, help="Reissue even when not expiring.")
    def renew(cmd: CommandRun, within, node_opt, force) -> None:
        """Reissue certificates that need it and restart receptor (TLS files are read
        only at start-up), one node at a time so the mesh stays connected."""
        nodes = _nodes(cmd, node_opt) if node_opt else cmd.nodes()
        options: dict[str, Any] = {}
        if within is not None:
            options["cert_renew_within"] = within
        if force:
            options["cert_force"] = [n.name for n in nodes]
        _apply(cmd, nodes, options, title="certs renew")

    @mesh_command(certs, "rotate-ca", output=False)
    @click.option("--apply", "do_apply", is_flag=True, help="Carry the rotation out (without it: show the plan).")
    def rotate_ca(cmd: CommandRun, do_apply) -> None:
        """Replace the mesh CA without breaking the mesh: nodes trust old and new CA,
        every certificate is reissued by the new one, then the old CA is dropped."""
        from meshctl.plugins.cert_backends import backend_for
        from meshctl.plugins.cert_backends.backends import SelfSigned
        from meshctl.plugins.cert_backends.checked import unwrap

        state, topo = cmd.state, cmd.topology
        if cmd.run.limit:
            raise UsageError("rotate-ca works on the whole mesh: every node must trust the new CA")
        nodes = cmd.nodes("")
        backends = {id(b): b for b in (unwrap(backend_for(state.plugins, topo, n)) for n in nodes)}
        if len(backends) != 1 or not isinstance(next(iter(backends.values())), SelfSigned):
            raise UsageError("rotate-ca rotates the CA meshctl keeps (backend selfsigned) used by every node; "
                             "with the file backend, create the new CA yourself and follow docs/certificates.md")
        backend: SelfSigned = next(iter(backends.values()))
        phase = backend.rotation_phase()
        cur = backend.current()[1]
        steps = [
            ("trust-both", "create a new CA; every node trusts old + new (restart one node at a time)"),
            ("reissue", "reissue every node certificate from the new CA (one node at a time)"),
            ("finish", "drop the old CA: nodes trust only the new one; the old CA is kept as ca-retired-*"),
        ]
        order = [s for s, _ in steps]
        start = 0 if phase is None else order.index(phase) + (1 if phase == "trust-both" else 0)
        state.out.print(f"mesh CA: {cur.subject.rfc4514_string()}  (state: {backend.dir})", markup=False)
        state.out.print(f"rotation in progress: {phase}" if phase else "no rotation in progress")
        for i, (_name, text) in enumerate(steps):
            mark = "done" if i < start else "todo"
            state.out.print(f"  {i + 1}. [{mark}] {text}", markup=False)
        state.out.print(f"nodes: {', '.join(n.name for n in nodes)}")
        if not do_apply:
            state.out.print("review, then run again with --apply")
            return
        if phase is None:
            backend.next(create=True)
            backend.set_rotation_phase("trust-both")
            phase = "trust-both"
        if phase == "trust-both":
            _apply(cmd, nodes, {}, title="1/3 trust both CAs")
            backend.set_rotation_phase("reissue")
            phase = "reissue"
        if phase == "reissue":
            _apply(cmd, nodes, {"cert_force": [n.name for n in nodes]}, title="2/3 reissue from the new CA")
            backend.promote_next()
        _apply(cmd, nodes, {}, title="3/3 drop the old CA")
        state.out.print(f"rotation complete: mesh CA is now {backend.current()[1].subject.rfc4514_string()}")


# Registered as an import format (meshctl_register_importers in __init__).
@click.command("awx-bundle")
@click.argument("bundle", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.pass_obj
def import_awx_bundle(state: Any, bundle: Path) -> None:
    """Print the mesh.yml node entry for an AWX install bundle."""
    from meshctl.plugin import shown
    from meshctl.plugins.cert_backends.awx_bundle import read_awx_bundle

    try:
        b = read_awx_bundle(bundle)
    except OSError as exc:
        raise UsageError(f"{shown(bundle)}: {exc.strerror or exc}") from None
    except ValueError as exc:  # its message starts with the bundle's name
        raise UsageError(str(exc)) from None
    click.echo(awx_bundle_entry(b, bundle), nl=False)
    for note in awx_bundle_notes(b, bundle):
        click.echo(f"note: {note}", err=True)


def awx_bundle_entry(b: Any, path: Path) -> str:
    """The mesh.yml node entry (indented for ``nodes:``). Every bundle value goes
    through a YAML writer: a bundle is outside input, and a raw value could add keys."""
    import yaml

    from meshctl.plugin import shown

    raw_port = b.variables.get("receptor_port", b.variables.get("receptor_listener_port"))
    if (b.listener_port is None and b.variables.get("receptor_listener", True) is not False
            and raw_port not in (None, "None")):  # "None": old AWX's spelling of no listener
        # AWX 24 accepts listener ports like -5 or 70000 and writes them into the bundle.
        raise UsageError(f"{shown(path.name)}: receptor_port {raw_port!r} is not a port (1-65535); fix the "
                         "instance's listener port in AWX and download the bundle again")
    if b.listener_port is not None and b.listener_protocol not in ("tcp", "ws"):
        raise UsageError(f"{shown(path.name)}: receptor_protocol {b.listener_protocol!r} is not supported "
                         "(meshctl listeners are tcp or ws)")
    node: dict[str, Any] = {"name": b.node_id, "role": b.role, "address": b.host}
    # Port and protocol always spelled out: AWX dials exactly what the bundle says,
    # whatever defaults.listener in mesh.yml holds.
    node["listener"] = (False if b.listener_port is None
                        else {"port": b.listener_port, "protocol": b.listener_protocol})
    if b.peers:
        node["peers"] = []
    if b.user:
        node["ssh"] = {"user": b.user}
    node["certificates"] = {"backend": "awx-bundle", "options": {"bundle": os.path.abspath(path)}}
    body = yaml.safe_dump([node], sort_keys=False, default_flow_style=None, width=4096).splitlines()

    out = [f"# From AWX install bundle {R.scalar(path.name)} ({b.layout} layout)."]
    if b.mintls13:
        out += ["# The bundle sets receptor_mintls13: true. meshctl sets it for the whole mesh:",
                "# put `receptor: {mintls13: true}` at the top level of mesh.yml."]
    for line in body:
        if line.startswith("  peers:"):
            out += ["  # The bundle peers to these addresses; add them as nodes (usually the control",
                    "  # node or a hop) and list their node names under peers:"]
            # JSON-quoted when odd, so a line break in a value cannot end the comment.
            out += [f"  #   {R.scalar(address)} ({R.scalar(protocol)})" for address, protocol in b.peers]
        out.append(line)
    return "".join(f"  {line}\n" for line in out)


def awx_bundle_notes(b: Any, path: Path) -> list[str]:
    """What the entry cannot carry, for stderr (seen even when stdout goes to a file)."""
    if b.mintls13:
        from meshctl.plugin import shown

        return [f"{shown(path.name)}: receptor_mintls13 is true; in meshctl it is mesh-wide: "
                "set receptor: {mintls13: true} in mesh.yml"]
    return []


def _apply(cmd: CommandRun, nodes: list, options: dict, title: str) -> list:
    state = cmd.state
    # One node at a time: a restarting node must never take the whole mesh down.
    engine = cmd.engine(CERTS_ONLY, options=options, forks=1)
    results = []
    for node in nodes:
        (res,) = engine.apply([node])
        results.append(res)
        if res.status in ("failed", "unreachable"):
            break
    if cmd.output == "json":
        print_json({"command": title, "summary": summary_counts(results), "hosts": [r.to_json() for r in results]})
    else:
        print_summary(state.out, results, verbose=state.verbose > 0, title=title)
    if any(r.status in ("failed", "unreachable") for r in results):
        cmd.exit(1)
    return results


def _print_status(state: Any, rows: list[dict], warn_days: int) -> None:
    from rich.markup import escape
    from rich.table import Table

    style = {"ok": "green", "warn": "yellow", "problem": "bold red", "missing": "bold red",
             "unreachable": "bold magenta", "failed": "bold red"}
    t = Table(title="certificates", title_justify="left", header_style="bold")
    for col in ("node", "status", "NodeID", "names", "issuer", "not after", "days", "chain", "key"):
        t.add_column(col)
    for r in rows:
        st = r["status"]
        if "subject" not in r:
            t.add_row(escape(r["node"]), f"[{style[st]}]{st}[/]", "", escape(r.get("error") or ""), "", "", "", "", "")
            continue
        t.add_row(escape(r["node"]), f"[{style[st]}]{st}[/]", escape(",".join(r["node_ids"])),
                  escape(",".join(r["names"])), escape(r["issuer"]), r["not_after"][:10], f"{r['days_left']:.0f}",
                  "ok" if r["chain_ok"] else "BAD", "ok" if r["key_matches"] else "BAD")
    state.out.print(t)
    for r in rows:
        for p in r.get("problems") or []:
            state.out.print(f"{escape(r['node'])}: {escape(p)}")
        if r["status"] == "warn":
            state.out.print(f"{escape(r['node'])}: expires in {r['days_left']:.0f} days (< {warn_days}): "
                            "run meshctl certs renew")
