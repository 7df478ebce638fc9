"""The ``registries:`` section: one entry per container registry, with the
grammar of registry locations and image references (OCI distribution's)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field, RootModel, field_validator, model_validator

from meshctl.plugin import StrictModel, valid_address

# Used with fullmatch: "$" also matches before a trailing newline.
_HOSTPORT = re.compile(r"(?P<host>\[[0-9a-fA-F:]+\]|[^:/\s]+)(?::(?P<port>\d{1,5}))?")
# The OCI distribution reference grammar (github.com/distribution/reference):
# path components, tag and digest. The host part is checked with _HOSTPORT.
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_LOCATION_PATH = re.compile(rf"(?:/{_PATH_COMPONENT})*")
_IMAGE_TAIL = re.compile(rf"(?P<path>{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?"
                         r"(?:@(?:sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}))?")
_NAME_MAX = 255  # distribution caps the repository name (host and path)
CERTS_D = "/etc/containers/certs.d"
CONF_D = "/etc/containers/registries.conf.d"
MANAGED_MARK = ".meshctl-managed"


def valid_hostport(value: str) -> bool:
    """``HOST`` or ``HOST:PORT``: a hostname, IPv4 or [IPv6] address, port 1-65535."""
    m = _HOSTPORT.fullmatch(value)
    if not m or not valid_address(m.group("host").strip("[]")):
        return False
    return not m.group("port") or 1 <= int(m.group("port")) <= 65535


def valid_location(value: str) -> bool:
    """``HOST[:PORT][/PATH]``: a registry, or a namespace in one (registries.conf prefix)."""
    host, slash, path = value.partition("/")
    return (valid_hostport(host) and bool(_LOCATION_PATH.fullmatch(slash + path))
            and len(value) <= _NAME_MAX and not value.endswith("/"))


def image_reference_problem(value: str) -> str | None:
    """Why ``value`` is not a fully qualified image reference
    ``HOST[:PORT]/NAME[:TAG][@sha256:HEX]``; None when it is one."""
    host, _, tail = value.partition("/")
    m = _IMAGE_TAIL.fullmatch(tail)
    if not valid_hostport(host) or not m:
        return (f"prepull image {value!r} is not an image reference (HOST[:PORT]/NAME[:TAG][@sha256:HEX]; "
                "lower-case name)")
    if len(host) + 1 + len(m.group("path")) > _NAME_MAX:
        return f"prepull image {value!r}: the name is longer than {_NAME_MAX} characters"
    return None


def _image_reference(value: str) -> str:
    problem = image_reference_problem(value)
    if problem:
        raise ValueError(problem)
    return value


ImageReference = Annotated[str, AfterValidator(_image_reference)]


class Registry(StrictModel):
    """One entry of ``registries:``."""

    host: str = Field(description="registry host[:port], as image names spell it")
    username: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    password_command: str | None = None
    password: str | None = Field(default=None, repr=False)
    ca_file: str | None = None
    insecure: bool = False
    mirror_of: str | None = None
    prepull: list[ImageReference] = Field(default_factory=list)

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not valid_hostport(value):
            raise ValueError(f"host {value!r} must be HOST or HOST:PORT")
        return value

    @field_validator("mirror_of")
    @classmethod
    def _mirror_of(cls, value: str | None) -> str | None:
        if value is not None and not valid_location(value):
            raise ValueError(f"mirror_of {value!r} is not a registry location (HOST[:PORT][/PATH], "
                             "as image names start)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Registry:
        sources = [s for s in ("password_env", "password_file", "password_command", "password")
                   if getattr(self, s) is not None]
        if len(sources) > 1:
            raise ValueError(f"give one password source, not {' and '.join(sources)}")
        if sources and not self.username:
            raise ValueError("a password needs a username")
        if self.username and not sources:
            raise ValueError("username given without password_env, password_file or password_command")
        for image in self.prepull:
            if not image.startswith(self.host + "/") and not (self.mirror_of and image.startswith(self.mirror_of + "/")):
                raise ValueError(f"prepull image {image!r} is not on {self.host} (name it fully: {self.host}/...)")
        return self

    @property
    def has_credentials(self) -> bool:
        return self.username is not None

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]", "_", self.host)


class Registries(RootModel[list[Registry]]):
    @model_validator(mode="after")
    def _unique(self) -> Registries:
        hosts = [r.host for r in self.root]
        dupes = sorted({h for h in hosts if hosts.count(h) > 1})
        if dupes:
            raise ValueError(f"registry listed twice: {', '.join(dupes)}")
        return self


def registries(topo: Any) -> list[Registry]:
    section = topo.sections.get("registries")
    return list(section.root) if section is not None else []
