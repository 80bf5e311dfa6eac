"""A machine's grant as the command line and the config file name it (pure, no I/O).

`oauth-auth token --client-credentials` and `--exchange github|kubernetes|file:PATH|env:NAME`
choose a grant instead of a login; a profile keeps the same choice in the config file as
a `machine` table. What is kept there is never a secret: the name of the environment
variable that holds the client secret, and the path of a private key file.

```toml
[profiles.ci.machine]
grant = "exchange"                 # or "client_credentials"
subject = "github"                 # github | kubernetes[:PATH] | file:PATH | env:NAME
subject_audience = "https://auth.example.com"   # the aud asked of GitHub (default: issuer)
client_secret_env = "CI_CLIENT_SECRET"          # optional: where the client secret is
assertion_key_file = "/run/secrets/ci-key.pem"  # optional: private_key_jwt
```
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:
    from .grants import Grant, SubjectToken

__all__ = ["GRANT_KINDS", "SUBJECT_FORMS", "MachineSpec", "parse_subject"]

#: The grants a profile or the command line may name.
GRANT_KINDS = ("client_credentials", "exchange")
#: How `--exchange` names a subject token source.
SUBJECT_FORMS = "github, kubernetes, kubernetes:PATH, file:PATH or env:NAME"
_KEYS = ("grant", "subject", "subject_audience", "client_secret_env", "assertion_key_file")


def parse_subject(text: str, *, audience: str) -> SubjectToken:
    """The subject token source `--exchange TEXT` names (`audience`: GitHub's `aud`).

    Raises:
        ConfigError: not one of `SUBJECT_FORMS`.
    """
    from .grants import EnvToken, FileToken, GitHubActionsToken, KubernetesToken

    kind, sep, rest = text.partition(":")
    if text == "github":
        return GitHubActionsToken(audience)
    if kind == "kubernetes":
        return KubernetesToken(rest) if sep and rest else KubernetesToken()
    if kind == "file" and rest:
        return FileToken(rest)
    if kind == "env" and rest:
        return EnvToken(rest)
    raise ConfigError(
        f"{text!r} names no subject token source",
        hint=f"use {SUBJECT_FORMS}",
    )


@dataclass(frozen=True)
class MachineSpec:
    """How a machine gets its tokens: a grant, and where its credentials are (no secret).

    Attributes:
        grant: "client_credentials" or "exchange".
        subject: for "exchange", the subject token source (`parse_subject`'s forms).
        subject_audience: the `aud` asked of GitHub Actions ("": the issuer).
        client_secret_env: the environment variable holding the client secret ("": none).
        assertion_key_file: a private key file (PEM or JWK JSON) for private_key_jwt.
    """

    grant: str
    subject: str = ""
    subject_audience: str = ""
    client_secret_env: str = ""
    assertion_key_file: str = ""

    def __post_init__(self) -> None:
        if self.grant not in GRANT_KINDS:
            raise ConfigError(
                f"machine grant {self.grant!r} is not one of {', '.join(GRANT_KINDS)}")
        if self.grant == "exchange" and not self.subject:
            raise ConfigError("a token exchange needs its subject token source",
                              hint=f"--exchange {SUBJECT_FORMS}")
        if self.grant == "client_credentials" and self.subject:
            raise ConfigError("--client-credentials and --exchange exclude each other")
        for name in _KEYS:
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"machine.{name} must be a string")
        if self.subject:
            parse_subject(self.subject, audience="")  # fail now, not at the first token

    @classmethod
    def from_config(cls, doc: object) -> MachineSpec:
        """A profile's `machine` table."""
        if not isinstance(doc, Mapping):
            raise ConfigError("a profile's machine entry must be a table",
                              hint="see `oauth-auth token --help`")
        unknown = sorted(set(doc) - set(_KEYS))
        if unknown:
            raise ConfigError(
                f"unknown machine setting(s): {', '.join(map(str, unknown))}",
                hint=f"a machine table may hold {', '.join(_KEYS)} (never a secret)",
            )
        values: dict[str, Any] = {k: doc[k] for k in _KEYS if doc.get(k) is not None}
        if "grant" not in values:
            raise ConfigError("a profile's machine entry needs a grant",
                              hint="grant = \"client_credentials\" or \"exchange\"")
        return cls(**values)

    def to_config(self) -> dict[str, str]:
        """What a profile keeps (empty settings left out)."""
        return {k: getattr(self, k) for k in _KEYS if getattr(self, k)}

    def client_secret(self, environ: Mapping[str, str] | None = None) -> str:
        """The client secret from `client_secret_env` ("" when none is named).

        Raises:
            ConfigError: the variable is named but not set.
        """
        if not self.client_secret_env:
            return ""
        value = (os.environ if environ is None else environ).get(self.client_secret_env, "")
        if not value:
            raise ConfigError(
                f"the environment variable {self.client_secret_env} that should hold the"
                " client secret is not set",
                hint=f"set {self.client_secret_env} (in CI, from the CI system's secrets)",
            )
        return value

    def build(self, issuer: str, scopes: Sequence[str] = ()) -> Grant:
        """The grant itself."""
        from .grants import ClientCredentials, TokenExchange

        key = self.assertion_key_file or None
        if self.grant == "client_credentials":
            return ClientCredentials(scopes, assertion_key=key)
        subject = parse_subject(self.subject, audience=self.subject_audience or issuer)
        return TokenExchange(subject, scopes=scopes, assertion_key=key)
