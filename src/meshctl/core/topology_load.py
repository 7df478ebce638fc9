"""Reading mesh.yml: the pydantic models assembled with the plugins' sections,
errors located as FILE:LINE:COL, defaults applied, then every rule checked."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Hashable, Iterable
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field, ValidationError, create_model

from meshctl.core import yamlpos
from meshctl.core.errors import Diagnostic, TopologyError
from meshctl.core.files import TOPOLOGY_LIMIT, read_text
from meshctl.core.topology_model import (
    DEFAULT_LISTENER_PORT,
    DefaultsBase,
    Listener,
    MeshBase,
    Node,
    NodeBase,
    SSHSettings,
    Topology,
    role_named,
)
from meshctl.core.topology_rules import check_rules

# ---------------------------------------------------------------------------
# Model assembly (plugins contribute sections)


@lru_cache(maxsize=32)
def _models(mesh_sections: tuple[tuple[str, type], ...], node_sections: tuple[tuple[str, type], ...]):
    node_fields = {name: (model | None, None) for name, model in node_sections}
    node_model = create_model("Node", __base__=NodeBase, **node_fields)
    defaults_model = create_model("Defaults", __base__=DefaultsBase, **node_fields)
    mesh_fields: dict[str, Any] = {name: (model | None, None) for name, model in mesh_sections}
    mesh_fields["defaults"] = (defaults_model, Field(default_factory=defaults_model))
    mesh_fields["nodes"] = (list[node_model], ...)
    root = create_model("Mesh", __base__=MeshBase, **mesh_fields)
    return root, node_model, defaults_model


def _section_models(plugins: Any) -> tuple[tuple, tuple]:
    if plugins is None:
        return (), ()
    secs = plugins.topology_sections()
    mesh = tuple(sorted((s.name, s.model) for s in secs.values() if s.scope == "mesh"))
    node = tuple(sorted((s.name, s.model) for s in secs.values() if s.scope == "node"))
    return mesh, node


def _unwrap(annotation: Any) -> Any:
    """Strip Optional/list/Annotated down to a model class (or None)."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if arg is not type(None):
                found = _unwrap(arg)
                if found is not None:
                    return found
        return None
    if origin in (list, tuple):
        args = typing.get_args(annotation)
        return _unwrap(args[0]) if args else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _model_at(root: type[BaseModel], path: tuple) -> type[BaseModel] | None:
    model: type[BaseModel] | None = root
    for seg in path:
        if model is None:
            return None
        if isinstance(seg, int):
            continue
        info = model.model_fields.get(seg)
        if info is None:
            return None
        model = _unwrap(info.annotation)
    return model


def format_path(path: Iterable[Hashable]) -> str:
    out = ""
    for seg in path:
        if isinstance(seg, int):
            out += f"[{seg}]"
        else:
            out += f".{seg}" if out else str(seg)
    return out


def _pydantic_diags(exc: ValidationError, root: type[BaseModel], loc: yamlpos.Located,
                    prefix: tuple = ()) -> list[Diagnostic]:
    diags = []
    for err in exc.errors(include_url=False):
        path = prefix + tuple(err["loc"])
        where = format_path(path)
        if err["type"] == "extra_forbidden":
            key = path[-1]
            parent = _model_at(root, path[:-1])
            message = f"unknown key {key!r}"
            if where.rpartition(".")[0]:
                message += f" in {format_path(path[:-1])}"
            if parent is not None:
                close = difflib.get_close_matches(str(key), list(parent.model_fields), n=1, cutoff=0.6)
                if close:
                    message += f" (did you mean {close[0]!r}?)"
                else:
                    message += f"; allowed: {', '.join(parent.model_fields)}"
            diags.append(loc.diag(path, message, key=True))
        elif err["type"] == "missing":
            diags.append(loc.diag(path[:-1], f"{format_path(path[:-1]) or 'top level'}: required key {path[-1]!r} is missing"))
        else:
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"].startswith("literal_error"):
                msg = msg.replace("Input should be", "must be")
            diags.append(loc.diag(path, f"{where}: {msg}"))
    return diags


# ---------------------------------------------------------------------------
# Loading


def load_topology(path: str | Path, plugins: Any = None) -> Topology:
    """Read, parse and validate a topology file. Raises :class:`TopologyError` with
    every problem found, or :class:`UsageError` when the file cannot be read."""
    text = read_text(path, "topology file", TOPOLOGY_LIMIT, missing="no such topology file (use -f FILE)")
    return parse_topology(text, str(path), plugins)


def parse_topology(text: str, file: str = "mesh.yml", plugins: Any = None) -> Topology:
    loc, diags = yamlpos.load(text, file)
    if loc is None:
        raise TopologyError(diags)
    if not isinstance(loc.data, dict):
        kind = "empty" if loc.data is None else f"a {type(loc.data).__name__}"
        raise TopologyError(
            diags + [loc.diag((), f"the topology must be a mapping with 'mesh' and 'nodes'; got {kind}")]
        )
    mesh_secs, node_secs = _section_models(plugins)
    root, node_model, _defaults_model = _models(mesh_secs, node_secs)
    data = loc.data
    raw_nodes = data.get("nodes")
    # Validate each node on its own so one bad node does not hide the rules that
    # can still be checked on the others: every error is reported in one run.
    shell = dict(data, nodes=[]) if "nodes" in data else dict(data)
    try:
        model = root.model_validate(shell)
    except ValidationError as exc:
        diags += _pydantic_diags(exc, root, loc)
        model = None
    good: dict[int, Any] = {}
    broken: set[int] = set()
    if isinstance(raw_nodes, list):
        for i, raw in enumerate(raw_nodes):
            try:
                good[i] = node_model.model_validate(raw)
            except ValidationError as exc:
                broken.add(i)
                diags += _pydantic_diags(exc, root, loc, prefix=("nodes", i))
    elif "nodes" in data:
        diags.append(loc.diag(("nodes",), "nodes: must be a list of node entries"))
    if isinstance(raw_nodes, list) and not raw_nodes:
        diags.append(loc.diag(("nodes",), "nodes: the topology has no nodes"))
    if model is None:
        raise TopologyError(diags)
    model.nodes = [good[i] for i in sorted(good)]
    topo = _resolve(model, loc, [n for n, _ in mesh_secs], [n for n, _ in node_secs], plugins,
                    indexes=sorted(good))
    # Names of nodes that failed schema validation still count as existing, so
    # their peers are not reported as unknown a second time.
    known_extra = {
        raw_nodes[i]["name"] for i in broken
        if isinstance(raw_nodes[i], dict) and isinstance(raw_nodes[i].get("name"), str)
    }
    problems = diags + check_rules(topo, plugins, known_extra=known_extra)
    if plugins is not None and not diags:
        def report(path: tuple, message: str, severity: str = "error") -> None:
            problems.append(loc.diag(tuple(path), message, severity))

        plugins.validate_topology(topo, report)
    errors = [d for d in problems if d.severity == "error"]
    if errors:
        raise TopologyError(problems)
    topo.warnings = sorted(problems)
    return topo


def _resolve(model: MeshBase, loc: yamlpos.Located, mesh_secs: list[str], node_secs: list[str], plugins: Any,
             indexes: list[int] | None = None) -> Topology:
    d = model.defaults
    nodes: list[Node] = []
    for pos, n in enumerate(model.nodes):
        i = indexes[pos] if indexes is not None else pos
        ssh_values = d.ssh.model_dump(exclude_none=True)
        if n.ssh is not None:
            ssh_values.update(n.ssh.model_dump(exclude_none=True))
        listener = _merge_listener(d.listener, n.listener)
        role = role_named(plugins, n.role)
        default = role.provisionable if role.managed_by_default is None else role.managed_by_default
        managed = n.managed if n.managed is not None else default
        node_sections = {}
        for name in node_secs:
            value = getattr(n, name, None)
            node_sections[name] = value if value is not None else getattr(d, name, None)
        nodes.append(
            Node(
                name=n.name,
                role=n.role,
                managed=managed,
                address=n.address or n.name,
                listener=listener,
                peers=list(n.peers),
                ssh=SSHSettings(**ssh_values),
                names=list(n.names),
                instance_groups=list(n.instance_groups),
                index=i,
                sections=node_sections,
                peers_from_control_nodes=n.peers_from_control_nodes,
            )
        )
    sections = {name: getattr(model, name, None) for name in mesh_secs}
    return Topology(mesh=model.mesh, nodes=nodes, file=loc.file, located=loc, sections=sections, defaults=d,
                    plugins=plugins)


def _merge_listener(default: Listener | None, own: Listener | None) -> Listener | None:
    if own is not None and not own.enabled:
        return None
    if own is None and default is None:
        return None
    values = {"port": DEFAULT_LISTENER_PORT, "protocol": "tcp"}
    for src in (default, own):
        if src is not None:
            if not src.enabled and src is default:
                if own is None:
                    return None
                continue
            values.update(src.model_dump(exclude_none=True, exclude={"enabled"}))
    return Listener(**values)

