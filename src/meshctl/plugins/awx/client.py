"""A small AWX API client: JSON over HTTPS with a token or basic auth, pagination,
and errors that keep AWX's field-keyed body so they can be mapped to mesh.yml."""

from __future__ import annotations

import base64
import json
import re
import urllib.parse
from typing import Any

from meshctl.plugin import MeshctlError, UsageError, read_secret, resolve_path
from meshctl.plugins.awx.model import AwxSection

#: Pages followed at most for one list: AWX pages by 25; a mesh is far smaller.
MAX_PAGES = 200


class AwxError(MeshctlError):
    """AWX answered with an error; ``body`` is its JSON (field -> messages, or msg/detail)."""

    def __init__(self, method: str, path: str, status: int, body: Any):
        self.method, self.path, self.status, self.body = method, path, status, body
        super().__init__(f"AWX refused {method} {path} ({status}): {describe(body)}")


def describe(body: Any) -> str:
    """AWX's error body in one line: ``field: message; ...``."""
    if isinstance(body, dict):
        parts = []
        for key, value in body.items():
            text = "; ".join(str(v) for v in value) if isinstance(value, list) else str(value)
            parts.append(text if key in ("msg", "detail", "__all__") else f"{key}: {text}")
        return "; ".join(parts)
    return str(body)[:300]


class AwxClient:
    def __init__(self, base_url: str, api_path: str = "/api/v2/", *, token: str | None = None,
                 username: str | None = None, password: str | None = None, ca_file: str | None = None,
                 verify: bool = True, timeout: float = 30.0):
        self.root = base_url.rstrip("/")
        self.api = api_path
        self.timeout = timeout
        if token is not None:
            self._auth = f"Bearer {token}"
        elif username is not None:
            self._auth = "Basic " + base64.b64encode(f"{username}:{password or ''}".encode()).decode()
        else:
            self._auth = None
        if self.root.startswith("https://"):
            import ssl  # here: every meshctl command loads this plugin, few talk to AWX

            self._ssl = ssl.create_default_context(cafile=ca_file)
            if not verify:
                self._ssl.check_hostname = False
                self._ssl.verify_mode = ssl.CERT_NONE
        else:
            self._ssl = None
        #: (method, path) of every write, in order: a second sync must add none.
        self.writes: list[tuple[str, str]] = []

    def url(self, path: str) -> str:
        return self.root + (path if path.startswith("/api/") else self.api + path.lstrip("/"))

    def request(self, method: str, path: str, body: Any = None, auth: bool = True, raw: bool = False) -> Any:
        import urllib.error
        import urllib.request

        url = self.url(path)
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if auth and self._auth:
            req.add_header("Authorization", self._auth)
        shown = urllib.parse.urlsplit(url).path
        if method not in ("GET", "OPTIONS"):
            self.writes.append((method, shown))
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self._ssl) as resp:
                payload = resp.read()
        except urllib.error.HTTPError as exc:
            payload = exc.read()
            try:
                parsed = json.loads(payload) if payload else {}
            except ValueError:
                parsed = payload.decode(errors="replace")[:300]
            raise AwxError(method, shown, exc.code, parsed) from None
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise MeshctlError(f"AWX at {self.root} cannot be reached: {reason}") from None
        if raw:
            return payload
        return json.loads(payload) if payload else None

    def get(self, path: str, **params: Any) -> Any:
        query = ("?" + urllib.parse.urlencode(params)) if params else ""
        return self.request("GET", path + query)

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, body)

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, body)

    def all(self, path: str, **params: Any) -> list[dict[str, Any]]:
        """Every item of a paginated list."""
        page = self.get(path, **params)
        items = list(page.get("results", []))
        for _ in range(MAX_PAGES):
            nxt = page.get("next")
            if not nxt:
                return items
            page = self.request("GET", nxt)
            items += page.get("results", [])
        raise MeshctlError(f"AWX list {path} has more than {MAX_PAGES} pages")

    def ping(self) -> dict[str, Any]:
        return self.request("GET", "ping/", auth=False)


#: Peers are receptor-address ids since AWX 23.8; 23.0-23.7 took hostnames, older had none.
SUPPORTED = (23, 8)


def client_for(topology: Any) -> AwxClient:
    """A client for the ``awx:`` section's AWX, its version checked against ``SUPPORTED``."""
    awx: AwxSection | None = topology.sections.get("awx")
    if awx is None:
        raise UsageError(f"{topology.file}: no awx: section (url and credentials of the AWX to sync)")
    token = read_secret(topology, "awx", "token", env=awx.token_env, file=awx.token_file,
                        command=awx.token_command, value=awx.token)
    password = read_secret(topology, "awx", "password", env=awx.password_env, file=awx.password_file,
                           command=awx.password_command, value=awx.password)
    ca = str(resolve_path(topology, awx.ca_file)) if awx.ca_file else None
    client = AwxClient(awx.url, awx.api_path, token=token, username=awx.username if token is None else None,
                       password=password, ca_file=ca, verify=awx.verify, timeout=awx.timeout)
    version = str(client.ping().get("version", ""))
    m = re.match(r"(\d+)\.(\d+)", version)
    if m is None or (int(m.group(1)), int(m.group(2))) < SUPPORTED:
        raise MeshctlError(f"AWX {version or '(no version)'} at {awx.url}: meshctl supports AWX 23.8 and later "
                           "(earlier AWX took hostnames as peers, before 23.0 it had no peers)")
    return client
