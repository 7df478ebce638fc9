"""HTTP side of the stand-in: routes, basic auth, headers and the 501 for anything the
AWX 24.6.1 recordings do not show."""

from __future__ import annotations

import base64
import http.server
import json
import re
import urllib.parse
from dataclasses import dataclass

from . import rules
from .model import Mesh
from .rules import NOT_FOUND, NoRecording

UNAUTHORIZED = {
    "detail": "Authentication credentials were not provided. To establish a login session, visit /api/login/."
}  # 005 (wrong password) and 011 (none) alike
BEARER = "Bearer realm=api authorization_url=/api/o/authorize/"  # 005
R, RP, RPO, RPP, RPPD = (
    "GET, HEAD, OPTIONS", "GET, POST, HEAD, OPTIONS", "GET, POST, DELETE, HEAD, OPTIONS",
    "GET, PUT, PATCH, HEAD, OPTIONS", "GET, PUT, PATCH, DELETE, HEAD, OPTIONS",
)  # fmt: skip  # the Allow headers as recorded per endpoint
INST = r"/api/v2/instances/(?P<ref>[^/?]+)/"
GROUP = r"/api/v2/instance_groups/(?P<gid>\d+)/"
ROUTES = [
    (r"/api/v2/ping/", R, "ping"),
    (r"/api/v2/", R, "root"),
    (r"/api/v2/config/", RPO, "config"),
    (r"/api/v2/me/", R, "me"),
    (r"/api/v2/mesh_visualizer/", R, "mesh"),
    (r"/api/v2/instances/", RP, "instances"),
    (INST, RPP, "instance"),
    (INST + "peers/", R, "peers"),
    (INST + "receptor_addresses/", R, "own_addresses"),
    (INST + "instance_groups/", RP, "instance_groups"),
    (INST + "health_check/", RP, "health"),
    (INST + "install_bundle/", R, "bundle"),
    (r"/api/v2/receptor_addresses/", R, "addresses"),
    (r"/api/v2/receptor_addresses/(?P<aid>\d+)/", R, "address"),
    (r"/api/v2/instance_groups/", RP, "groups"),
    (GROUP, RPPD, "group"),
    (GROUP + "instances/", RP, "group_instances"),
]
PAGE = 25  # AWX's page size; no recorded list reached it, so a longer one is a 501


@dataclass
class Call:
    """One request the stand-in received (``body``: parsed JSON, raw text, or None)."""

    method: str
    path: str
    body: object
    status: int


class BadJson(Exception):
    pass


def page(results: list) -> dict:
    # Pagination shape of 007/009/010: nothing recorded shows a "next" page.
    if len(results) > PAGE:
        raise NoRecording(f"a list of {len(results)} items (more than one page)")
    return {"count": len(results), "next": None, "previous": None, "results": results}


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "awx-standin"
    timeout = 10  # a stuck client cannot hold a worker thread forever
    standin = None  # set on a subclass by awx_standin(): holds mesh, calls, auth, static

    def log_message(self, *args):
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        status, body, headers = self._answer(url.path, query, raw)
        st = self.standin
        try:
            logged = json.loads(raw) if raw else None
        except ValueError:
            logged = raw.decode("utf-8", "replace")
        st.calls.append(Call(self.command, self.path, logged, status))
        data = (
            body
            if isinstance(body, bytes)
            else b""
            if body is None
            else json.dumps(body, separators=(",", ":")).encode()
        )
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_OPTIONS = do_HEAD = _serve  # noqa: N815

    def _answer(self, path: str, query: dict, raw: bytes):
        st = self.standin
        route = next(
            ((m, allow, name) for pat, allow, name in ROUTES if (m := re.fullmatch(pat, path))),
            None,
        )
        try:
            if route is None:
                raise NoRecording("this path")
            match, allow, name = route
            headers = {"Content-Type": "application/json", "Allow": allow}
            headers |= {"X-API-Product-Name": "AWX", "X-API-Node": "awx-task"}
            if name != "ping":  # 001: ping is public
                auth = self.headers.get("Authorization", "")
                if auth.lower().startswith("bearer "):
                    raise NoRecording("token (Bearer) authentication")
                if auth != st.basic:
                    return 401, UNAUTHORIZED, headers | {"WWW-Authenticate": BEARER}
                headers["X-API-Product-Version"] = "24.6.1"  # absent on 001, 005, 036
            if self.command not in allow.split(", "):
                return 405, {"detail": f'Method "{self.command}" not allowed.'}, headers
            if self.command == "HEAD":
                raise NoRecording("HEAD")
            with st.mesh.lock:
                reply = getattr(self, "r_" + name)(st.mesh, match.groupdict(), query, raw)
        except NoRecording as exc:
            detail = (
                f"awx stand-in: no recording of AWX 24.6.1 for {self.command} {self.path} ({exc})"
            )
            return (
                501,
                {"detail": detail},
                {"Content-Type": "application/json", "X-AWX-Standin": "no-recording"},
            )
        except BadJson as exc:
            headers.pop("X-API-Product-Version", None)  # 036
            return (
                400,
                {"detail": f"JSON parse error - {exc}\nPossible cause: trailing comma."},
                headers,
            )
        except Exception as exc:  # a stand-in bug: say so rather than drop the connection
            return (
                500,
                {"detail": f"awx stand-in error: {exc!r}"},
                {"Content-Type": "application/json"},
            )
        status, body, extra = reply if len(reply) == 3 else (*reply, {})
        return status, body, headers | extra

    # -- helpers -------------------------------------------------------------------------

    def _only(self, query: dict, allowed: dict) -> dict:
        """The query parameters a recording shows (``allowed``: name -> accepted values or None)."""
        out = {}
        for key, values in query.items():
            ok = allowed.get(key, ())
            if key not in allowed or len(values) != 1 or (ok is not None and values[0] not in ok):
                raise NoRecording(f"the query parameter {key}={values}")
            out[key] = values[0]
        return out

    @staticmethod
    def _json(raw: bytes) -> dict:
        if not raw.strip():
            return {}  # 111: a POST with no body acts as {}
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise BadJson(str(exc)) from None
        if not isinstance(data, dict):
            raise NoRecording("a JSON body that is not an object")
        return data

    def _group(self, mesh: Mesh, args: dict):
        return mesh.groups.get(int(args["gid"]))

    # -- routes (each returns (status, body[, extra headers])) ----------------------------

    def _static(self, number: str, query: dict, method: str = "GET"):
        self._only(query, {})
        if self.command != method:
            raise NoRecording(self.command)
        return 200, self.standin.static[number]

    def r_ping(self, mesh, args, query, raw):
        self._only(query, {})
        if self.command != "GET":
            raise NoRecording(self.command)
        return 200, mesh.ping_json()

    def r_root(self, mesh, args, query, raw):
        return self._static("003", query)

    def r_config(self, mesh, args, query, raw):
        return self._static("002", query)

    def r_me(self, mesh, args, query, raw):
        return self._static("004", query)

    def r_mesh(self, mesh, args, query, raw):
        self._only(query, {})
        return 200, mesh.mesh_json()

    def r_instances(self, mesh, args, query, raw):
        if self.command == "OPTIONS":
            return self._static("006", query, "OPTIONS")
        if self.command == "POST":
            self._only(query, {})
            status, body, location = rules.create_instance(mesh, self._json(raw))
            return status, body, {"Location": location} if location else {}
        # 064/065/149: exact hostname, node_type, and order_by id or hostname; the default
        # order is the model's, hostname (as mesh_visualizer shows, 068).
        q = self._only(query, {"hostname": None, "node_type": None, "order_by": ("id", "hostname")})
        found = [i for i in mesh.instances.values() if q.get("hostname", i.hostname) == i.hostname]
        found = [i for i in found if q.get("node_type", i.node_type) == i.node_type]
        found.sort(key=lambda i: i.id if q.get("order_by") == "id" else i.hostname)
        return 200, page([mesh.instance_json(i, "list") for i in found])

    def r_instance(self, mesh, args, query, raw):
        self._only(query, {})
        inst = mesh.by_ref(args["ref"])
        if inst is None:
            if self.command in ("GET", "PATCH"):
                return 404, NOT_FOUND  # 067
            raise NoRecording(f"{self.command} of a missing instance")
        if self.command == "GET":
            return 200, mesh.instance_json(inst, "detail")
        if self.command == "PATCH":
            return rules.patch_instance(mesh, inst, self._json(raw))
        if self.command == "OPTIONS":
            return 200, self.standin.static["066"]
        raise NoRecording(self.command)  # PUT

    def _sub(self, mesh, args, query):
        self._only(query, {})
        return mesh.by_ref(args["ref"])

    def r_peers(self, mesh, args, query, raw):
        inst = self._sub(mesh, args, query)
        if inst is None or self.command != "GET":
            raise NoRecording(
                f"{self.command} of this sublist" if inst else "a missing instance's peers"
            )
        return 200, page([mesh.address_json(mesh.addresses[a]) for a in mesh.peers_of(inst)])

    def r_own_addresses(self, mesh, args, query, raw):
        inst = self._sub(mesh, args, query)
        if inst is None or self.command != "GET":
            raise NoRecording("a missing instance's addresses" if inst is None else self.command)
        address = mesh.address_of(inst)
        return 200, page([mesh.address_json(address)] if address else [])

    def r_instance_groups(self, mesh, args, query, raw):
        inst = self._sub(mesh, args, query)
        if inst is None or self.command not in ("GET", "POST"):
            raise NoRecording("a missing instance's groups" if inst is None else self.command)
        if self.command == "GET":  # 123
            found = [g for g in mesh.groups.values() if inst.id in g.members]
            return 200, page([mesh.group_json(g, detail=False) for g in found])
        data = self._json(raw)
        group = mesh.groups.get(data.get("id")) if isinstance(data.get("id"), int) else None
        if group is None or set(data) - {"id", "disassociate"}:
            raise NoRecording("this body on the instance side (only a known group id is recorded)")
        return rules.membership(mesh, group, inst.id, bool(data.get("disassociate")))

    def r_health(self, mesh, args, query, raw):
        inst = self._sub(mesh, args, query)
        if inst is None or inst.node_type != "execution":
            return 404, NOT_FOUND  # 112, 113
        if self.command == "GET":
            return 200, mesh.health_json(inst)  # 107, 115
        if self.command == "POST":
            self._json(raw)
            return rules.health_check(mesh, inst)
        raise NoRecording(self.command)

    def r_bundle(self, mesh, args, query, raw):
        inst = self._sub(mesh, args, query)
        if self.command != "GET":
            raise NoRecording(self.command)
        if inst is None:
            return 404, NOT_FOUND  # 105
        if inst.node_type not in ("execution", "hop"):
            return 400, {
                "msg": "Install bundle can only be generated for execution or hop nodes."
            }  # 104
        data = self.standin.bundles.get(inst.hostname)
        if data is None:
            raise NoRecording(f"an install bundle for {inst.hostname} (none was recorded)")
        name = f"{inst.hostname}_install_bundle.tar.gz"
        # 100: gzip bytes served as text/html; the stand-in serves the same bytes each GET
        return (
            200,
            data,
            {
                "Content-Type": "text/html; charset=utf-8",
                "Content-Disposition": f"attachment; filename={name}",
            },
        )

    def r_addresses(self, mesh, args, query, raw):
        self._only(query, {})
        return 200, page([mesh.address_json(a) for a in mesh.addresses.values()])

    def r_address(self, mesh, args, query, raw):
        self._only(query, {})
        address = mesh.addresses.get(int(args["aid"]))
        if address is None:
            raise NoRecording("a missing receptor address")
        return 200, mesh.address_json(address)  # 050

    def r_groups(self, mesh, args, query, raw):
        self._only(query, {})
        if self.command == "POST":
            status, body, location = rules.create_group(mesh, self._json(raw))
            return status, body, {"Location": location} if location else {}
        if self.command != "GET":
            raise NoRecording(self.command)
        return 200, page([mesh.group_json(g, detail=False) for g in mesh.groups.values()])

    def r_group(self, mesh, args, query, raw):
        self._only(query, {})
        group = self._group(mesh, args)
        if group is None and self.command in ("GET", "DELETE"):
            return 404, {"detail": "No InstanceGroup matches the given query."}  # 154
        if self.command == "GET":
            return 200, mesh.group_json(group, detail=True)
        if self.command == "DELETE":
            return rules.delete_group(mesh, group)
        raise NoRecording(self.command)

    def r_group_instances(self, mesh, args, query, raw):
        self._only(query, {})
        group = self._group(mesh, args)
        if group is None or self.command not in ("GET", "POST"):
            raise NoRecording("a missing instance group" if group is None else self.command)
        if self.command == "GET":  # 121, 130, 136
            return 200, page(
                [mesh.instance_json(mesh.instances[i], "sublist") for i in sorted(group.members)]
            )
        data = self._json(raw)
        if "id" not in data:
            return 400, {"msg": "Instance 'id' field is missing."}  # 139
        if set(data) - {"id", "disassociate"}:
            raise NoRecording("keys besides id and disassociate")
        return rules.membership(mesh, group, data["id"], bool(data.get("disassociate")))


def basic_header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
