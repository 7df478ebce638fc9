"""The ``awx:`` sections of mesh.yml: where AWX is and how to log in (mesh), and the
AWX-side facts of one node (node)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from meshctl.plugin import StrictModel


class AwxSection(StrictModel):
    """``awx:`` at the top of mesh.yml."""

    #: AWX's base URL; ``/api/v2/`` is appended (``api_path`` for the AAP gateway).
    url: Annotated[str, Field(pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$")]
    #: ``/api/v2/`` for AWX, ``/api/controller/v2/`` behind the AAP 2.5 gateway.
    api_path: Annotated[str, Field(pattern=r"^/[A-Za-z0-9_/-]*/$")] = "/api/v2/"
    token: str | None = Field(default=None, repr=False)
    token_env: str | None = None
    token_file: str | None = None
    token_command: str | None = None
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    password_env: str | None = None
    password_file: str | None = None
    password_command: str | None = None
    #: A PEM CA bundle for AWX's TLS certificate (else the system's).
    ca_file: str | None = None
    verify: bool = True
    timeout: Annotated[float, Field(gt=0, le=600)] = 30.0
    #: Seconds ``provision --awx`` waits for each node's health check.
    health_check_timeout: Annotated[float, Field(gt=0, le=3600)] = 300.0
    #: Seconds ``remove --awx`` and ``awx remove`` wait for AWX to delete a node it
    #: deprovisions (AWX waits for the node's running jobs first).
    deprovision_timeout: Annotated[float, Field(gt=0, le=3600)] = 600.0

    @model_validator(mode="after")
    def _one_login(self) -> AwxSection:
        tokens = [v for v in (self.token, self.token_env, self.token_file, self.token_command) if v is not None]
        passwords = [v for v in (self.password, self.password_env, self.password_file, self.password_command)
                     if v is not None]
        if len(tokens) > 1 or len(passwords) > 1:
            raise ValueError("give one source for the token and one for the password")
        if tokens and (passwords or self.username):
            raise ValueError("log in with a token or with username and password, not both")
        if passwords and not self.username:
            raise ValueError("a password needs a username")
        if not tokens and not passwords:
            raise ValueError("no credentials: set token_env (or token_file, token_command), "
                             "or username with password_env")
        return self


class AwxNode(StrictModel):
    """``awx:`` on a node: what AWX should record about it beyond the topology."""

    enabled: bool = True
    #: AWX's capacity_adjustment, 0 to 1.
    capacity_adjustment: Annotated[float, Field(ge=0, le=1)] | None = None
    #: False: AWX's policies do not add this node to instance groups by themselves.
    managed_by_policy: bool | None = None
