"""OIDCParams: what identifies one OAuth client at one OpenID provider."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .errors import ConfigError

__all__ = ["DEFAULT_CALLBACK_PORT", "OIDCParams"]

#: ToolHive's loopback callback port, so one client registration serves both tools.
DEFAULT_CALLBACK_PORT = 8666


@dataclass(frozen=True)
class OIDCParams:
    """The OpenID provider and client to get tokens from.

    Attributes:
        issuer: the provider's issuer URL (https, or http on a loopback host).
        client_id: the public (native) client registered at the provider.
        scopes: scopes to request; "openid" and "offline_access" are added for logins.
        audience: the RFC 8707 resource indicator sent as `resource` on every token
            request; empty for none.
        callback_port: loopback port of the redirect URI; 0 becomes 8666 (ToolHive's).
    """

    issuer: str
    client_id: str
    scopes: Sequence[str] = field(default=())
    audience: str = ""
    callback_port: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.issuer, str) or not self.issuer:
            raise ConfigError("OIDCParams.issuer is required", hint="pass the issuer URL")
        # The issuer's scheme (https, or http on loopback) is checked at discovery, where
        # it matters, so that building params for key derivation never fails.
        if not isinstance(self.client_id, str) or not self.client_id:
            raise ConfigError("OIDCParams.client_id is required", hint="pass the client id")
        if isinstance(self.scopes, str):
            raise ConfigError(
                "OIDCParams.scopes must be a sequence of scope strings, not one string",
                hint='write scopes=["openid", "email"]',
            )
        object.__setattr__(self, "scopes", tuple(self.scopes))
        if any(not isinstance(s, str) or not s or " " in s for s in self.scopes):
            raise ConfigError("each scope must be a non-empty string without spaces")
        # tolerate None from config files, which the annotation does not admit
        object.__setattr__(self, "audience", self.audience or "")
        if not isinstance(self.callback_port, int) or not 0 <= self.callback_port <= 65535:
            raise ConfigError(
                f"callback_port {self.callback_port!r} is not a TCP port (0-65535)",
                hint="0 means the default, 8666",
            )
        if self.callback_port == 0:
            object.__setattr__(self, "callback_port", DEFAULT_CALLBACK_PORT)

    @property
    def port(self) -> int:
        """The loopback callback port (8666 when 0 was given)."""
        return self.callback_port
