"""Tokens without a person: client credentials, private_key_jwt and token exchange.

`OAuthTokenSource(oidc, ..., grant=...)` obtains a new token with a grant where a
person's session would log in interactively: when tiers 1-3 have no usable token. The
grant runs under the same in-process lock and cross-process lock as a refresh, after the
shared access-token entry was read again, so N processes that need a token at once make
one token request and share its answer through tier 2. A grant's token usually comes
without a refresh token; then tier 3 is skipped and the grant simply runs again at
expiry, or after a 401 invalidated the token.

The grants:

- `ClientCredentials(scopes=(), *, assertion_key=None)`: RFC 6749 section 4.4. The
  client authenticates with `OIDCParams.client_secret` (client_secret_basic, or
  client_secret_post when that is all the provider lists), or with a JWT it signs with
  `assertion_key` (private_key_jwt, RFC 7523).
- `TokenExchange(subject, ...)`: RFC 8693. Trades a token the platform already gives the
  workload (a CI job's OIDC token, a Kubernetes service-account token) for an access
  token of the provider.

The subject tokens (`SubjectToken`: `read()` and a `token_type`):

- `GitHubActionsToken(audience)`: the job's OIDC token, asked for at
  ACTIONS_ID_TOKEN_REQUEST_URL with ACTIONS_ID_TOKEN_REQUEST_TOKEN;
- `KubernetesToken(path=...)`: a projected service-account token, read again whenever
  the kubelet rotates the file;
- `FileToken(path)`, `EnvToken(name)`, `ExecToken(argv)`: any other subject token.

No secret (client secret, private key, subject token) is ever shown by a repr, written
to a log line or an error message, or put on a command line.
"""

from __future__ import annotations

import abc
import base64
import json
import logging
import os
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import urlencode

from ._client_assertion import CLIENT_ASSERTION_TYPE, AssertionKey, AssertionKeyInput
from ._keys import LOGIN_SCOPES, checked_scopes, normalize_scopes
from .errors import ConfigError, OAuthError, SubjectTokenError, TransportError

if TYPE_CHECKING:
    from ._discovery import ProviderMetadata
    from ._http import IdPHttp
    from ._params import OIDCParams
    from ._protocol import ClientAuthentication
    from ._token import Token

__all__ = [
    "ACCESS_TOKEN_TYPE",
    "DEFAULT_KUBERNETES_TOKEN_PATH",
    "ID_TOKEN_TYPE",
    "JWT_TOKEN_TYPE",
    "TOKEN_EXCHANGE_GRANT",
    "ClientCredentials",
    "EnvToken",
    "ExecToken",
    "FileToken",
    "GitHubActionsToken",
    "Grant",
    "GrantRequest",
    "KubernetesToken",
    "SubjectToken",
    "TokenExchange",
    "run_grant",
]

log = logging.getLogger("oauth_auth")

#: RFC 8693 section 3 token type identifiers.
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
#: The grant type of a token exchange (RFC 8693 section 2.1).
TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
#: Where a pod finds its service-account token (the default projected volume).
DEFAULT_KUBERNETES_TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token"
#: The environment variables GitHub Actions sets in a job with `id-token: write`.
GITHUB_URL_ENV = "ACTIONS_ID_TOKEN_REQUEST_URL"
GITHUB_TOKEN_ENV = "ACTIONS_ID_TOKEN_REQUEST_TOKEN"
#: Longest subject token we accept from a file, a variable or a command (bytes).
MAX_SUBJECT_TOKEN = 1 << 16
#: Seconds a subject-token command may run, unless `ExecToken(timeout=...)` says otherwise.
DEFAULT_EXEC_TIMEOUT = 30.0
#: Errors of a token exchange that are about its subject token (RFC 8693 section 2.2.2
#: answers invalid_request for an invalid subject token; most servers say invalid_grant).
SUBJECT_ERRORS = frozenset({"invalid_grant", "invalid_request", "invalid_token"})


# ---------------------------------------------------------------------- subject tokens


@runtime_checkable
class SubjectToken(Protocol):
    """Where a token exchange's subject token comes from.

    `read()` is called each time the token source needs a new access token (under its
    lock, so never concurrently for one source); it returns the token, or raises an
    `OAuthAuthError` (`ConfigError`, `SubjectTokenError`, `TransportError`) that says
    what to fix. `token_type` is its RFC 8693 type identifier.
    """

    token_type: str

    def read(self) -> str: ...


def _clean(value: str, what: str) -> str:
    """A subject token as read: stripped, one printable word, bounded."""
    token = value.strip()
    if not token:
        raise SubjectTokenError(f"{what} is empty", hint="check that it holds the token")
    if len(token) > MAX_SUBJECT_TOKEN:
        raise SubjectTokenError(f"{what} is larger than {MAX_SUBJECT_TOKEN} bytes")
    if any(ch.isspace() or not ch.isprintable() for ch in token):
        raise SubjectTokenError(
            f"{what} is not one token (it has spaces, line breaks or control characters)",
            hint="it should hold the token alone",
        )
    return token


class FileToken:
    """A subject token kept in a file, read again whenever the file changes.

    The file's identity and size and its modification time are compared with what was
    read last; the contents are read again only when one of them changed. That covers
    the ways tokens are rotated: rewritten in place, replaced by a rename, or (in a
    Kubernetes projected volume) by swapping the `..data` symlink. Safe for concurrent
    use.

    Args:
        path: the token file.
        token_type: its RFC 8693 type (default: a JWT).
    """

    def __init__(self, path: str | os.PathLike[str], *, token_type: str = JWT_TOKEN_TYPE) -> None:
        self.path = os.fspath(path)
        if not self.path:
            raise ConfigError("the subject token file's path is empty")
        self.token_type = token_type
        self._lock = threading.Lock()
        self._cached: tuple[tuple[int, int, int, int], str] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(path={self.path!r})"

    def read(self) -> str:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise self._missing() from None
        except OSError as exc:
            raise ConfigError(
                f"cannot read the subject token file {self.path!r} ({exc.strerror or exc})",
                hint="check the file's path and permissions",
            ) from None
        stamp = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
        with self._lock:
            cached = self._cached
            if cached is not None and cached[0] == stamp:
                return cached[1]
            try:
                with open(self.path, "rb") as f:
                    raw = f.read(MAX_SUBJECT_TOKEN + 1)
            except FileNotFoundError:  # removed between stat and open (a rotation)
                raise self._missing() from None
            except OSError as exc:
                raise ConfigError(
                    f"cannot read the subject token file {self.path!r}"
                    f" ({exc.strerror or exc})",
                    hint="check the file's path and permissions",
                ) from None
            token = _clean(raw.decode("utf-8", "replace"), f"the subject token file {self.path!r}")
            if cached is not None:
                log.debug("the subject token file %s changed; read it again", self.path)
            self._cached = (stamp, token)
            return token

    def _missing(self) -> ConfigError:
        return ConfigError(
            f"the subject token file {self.path!r} does not exist",
            hint="check the path (and, in a pod, the projected volume that should hold it)",
        )


class KubernetesToken(FileToken):
    """A Kubernetes service-account token (a projected volume), read again as it rotates.

    The kubelet rewrites the file at 80% of the token's life; every token exchange reads
    the current one. For an audience of your own, mount a projected
    `serviceAccountToken` volume with `audience:` and give its path here.

    Args:
        path: the token file (default: the pod's own service-account token).
    """

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_KUBERNETES_TOKEN_PATH) -> None:
        super().__init__(path, token_type=JWT_TOKEN_TYPE)

    def _missing(self) -> ConfigError:
        return ConfigError(
            f"no Kubernetes service-account token at {self.path!r}",
            hint="run in a pod with a projected serviceAccountToken volume mounted there"
            " (automountServiceAccountToken, or a volume with the audience of the provider)",
        )


class EnvToken:
    """A subject token in an environment variable, read at each exchange.

    Args:
        name: the variable.
        token_type: its RFC 8693 type (default: a JWT).
    """

    def __init__(self, name: str, *, token_type: str = JWT_TOKEN_TYPE) -> None:
        if not isinstance(name, str) or not name or "=" in name:
            raise ConfigError("EnvToken needs the name of an environment variable")
        self.name = name
        self.token_type = token_type

    def __repr__(self) -> str:
        return f"EnvToken(name={self.name!r})"

    def read(self) -> str:
        value = os.environ.get(self.name)
        if not value:
            raise ConfigError(
                f"the environment variable {self.name} that should hold the subject token"
                " is not set",
                hint=f"set {self.name} to the token",
            )
        return _clean(value, f"the environment variable {self.name}")


class ExecToken:
    """A subject token printed by a command (its standard output, nothing else).

    The command runs without a shell and without standard input; its standard error is
    the caller's (so its messages reach the user), and is never put into an error of
    ours: a failing tool may print a credential there. A non-zero exit status, a time-out
    or an empty output is a `SubjectTokenError`.

    Args:
        argv: the program and its arguments (never put a secret there: every local user
            can read a process's command line).
        timeout: seconds it may run.
        token_type: the RFC 8693 type of what it prints (default: a JWT).
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        timeout: float = DEFAULT_EXEC_TIMEOUT,
        token_type: str = JWT_TOKEN_TYPE,
    ) -> None:
        if isinstance(argv, str) or not argv or not all(isinstance(a, str) for a in argv):
            raise ConfigError(
                "ExecToken needs argv as a list of strings, the program first",
                hint="for example ExecToken(['my-tool', 'print-token'])",
            )
        if not timeout > 0:
            raise ConfigError("ExecToken's timeout must be positive")
        self.argv = tuple(argv)
        self.timeout = float(timeout)
        self.token_type = token_type

    def __repr__(self) -> str:
        # The program only: its arguments are the user's business.
        return f"ExecToken(program={self.argv[0]!r})"

    def read(self) -> str:
        program = self.argv[0]
        try:
            done = subprocess.run(  # argv is the caller's, and no shell
                self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=None,
                timeout=self.timeout, check=False,
            )
        except FileNotFoundError:
            raise ConfigError(
                f"the subject token command {program!r} was not found",
                hint="check the program's name or path",
            ) from None
        except PermissionError:
            raise ConfigError(f"the subject token command {program!r} is not executable") \
                from None
        except subprocess.TimeoutExpired:
            raise SubjectTokenError(
                f"the subject token command {program!r} did not finish within"
                f" {self.timeout:g} s",
                hint="check the command, or give it a longer timeout",
            ) from None
        if done.returncode != 0:
            raise SubjectTokenError(
                f"the subject token command {program!r} exited with status {done.returncode}",
                hint="its own messages are on standard error above; run it by hand to check",
            )
        return _clean(done.stdout.decode("utf-8", "replace"),
                      f"the output of the subject token command {program!r}")


class GitHubActionsToken:
    """The GitHub Actions job's OIDC token, for the given audience.

    GitHub gives a job whose workflow has `permissions: id-token: write` two environment
    variables: ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN. The token
    is asked for with a GET of `<url>&audience=<audience>` carrying
    `Authorization: bearer <request token>` (what actions/toolkit's `getIDToken` does);
    the answer's `value` is a JWT signed by https://token.actions.githubusercontent.com,
    with `sub` such as `repo:owner/name:ref:refs/heads/main`, `repository`, `ref` and
    `aud`. A new one is asked for at each exchange (they live minutes).

    Args:
        audience: the `aud` the provider expects ("" : GitHub's default, the owner's URL).
        timeout: seconds for the request.
        transport: an httpx transport (tests, proxies).
    """

    token_type = JWT_TOKEN_TYPE

    def __init__(
        self, audience: str = "", *, timeout: float = 10.0, transport: Any = None
    ) -> None:
        if not isinstance(audience, str):
            raise ConfigError("GitHubActionsToken's audience must be a string")
        self.audience = audience
        self._timeout = timeout
        self._transport = transport
        self._http: IdPHttp | None = None

    def __repr__(self) -> str:
        return f"GitHubActionsToken(audience={self.audience!r})"

    def read(self) -> str:
        url = os.environ.get(GITHUB_URL_ENV, "")
        request_token = os.environ.get(GITHUB_TOKEN_ENV, "")
        if not url or not request_token:
            missing = GITHUB_URL_ENV if not url else GITHUB_TOKEN_ENV
            raise ConfigError(
                f"{missing} is not set, so this is not a GitHub Actions job that may ask"
                " for an OIDC token",
                hint="give the job the permission `id-token: write` (permissions:"
                " id-token: write in the workflow or the job)",
            )
        if self.audience:
            url += ("&" if "?" in url else "?") + urlencode({"audience": self.audience})
        if self._http is None:
            from ._http import IdPHttp

            self._http = IdPHttp(timeout=self._timeout, transport=self._transport)
        try:
            doc = self._http.get_json(url, headers={"Authorization": f"bearer {request_token}"})
        except TransportError as exc:
            status = exc.status_code
            if status is None or status >= 500 or status == 429:
                raise  # retryable: GitHub is down or slow
            raise SubjectTokenError(
                f"GitHub refused the request for the job's OIDC token (HTTP {status})",
                hint="ACTIONS_ID_TOKEN_REQUEST_TOKEN is valid only while its job runs;"
                " check the job's `id-token: write` permission",
            ) from None
        value = doc.get("value")
        if not isinstance(value, str):
            raise SubjectTokenError(
                "GitHub's answer to the OIDC token request has no `value`",
                hint="check ACTIONS_ID_TOKEN_REQUEST_URL",
            )
        return _clean(value, "GitHub's OIDC token")


# ---------------------------------------------------------------------- grants


@dataclass(frozen=True)
class GrantRequest:
    """One token request a grant prepared: the form and how the client authenticates.

    `replayable` is False when the form carries a one-time client assertion (its `jti`
    would be refused a second time), so a 5xx is not answered by posting it again.
    """

    form: Mapping[str, str] = field(repr=False)
    client: ClientAuthentication
    replayable: bool = True


class Grant(abc.ABC):
    """How `OAuthTokenSource` obtains a new token without a person.

    `prepare()` builds the token request (reading whatever it needs, such as a subject
    token); `refused()` turns the provider's error answer into the error to raise.
    Called under the token source's locks, never concurrently for one source.
    """

    @abc.abstractmethod
    def prepare(self, oidc: OIDCParams, metadata: ProviderMetadata, now: float) -> GrantRequest:
        """The token request to send now."""

    def refused(self, exc: OAuthError, request: GrantRequest, now: float) -> Exception:
        """The error to raise when the provider refused `request` (default: as is)."""
        return exc


def _authenticate(
    oidc: OIDCParams,
    metadata: ProviderMetadata,
    key: AssertionKey | None,
    form: dict[str, str],
    now: float,
    *,
    required: bool,
) -> tuple[ClientAuthentication, bool]:
    """The client authentication of a grant's request, adding a client assertion to the
    form for private_key_jwt; returns it and whether the request may be replayed."""
    from ._protocol import ClientAuthentication, client_auth_for

    if key is not None:
        form["client_assertion_type"] = CLIENT_ASSERTION_TYPE
        form["client_assertion"] = key.sign(oidc.client_id, metadata.token_endpoint, now)
        return ClientAuthentication(oidc.client_id, "", "none"), False
    if required and not oidc.client_secret:
        raise ConfigError(
            f"client {oidc.client_id!r} has no credentials for the client credentials grant",
            hint="set OIDCParams.client_secret, or pass assertion_key= (a private key"
            " registered with the provider) for private_key_jwt",
        )
    auth = client_auth_for(
        oidc.client_id, oidc.client_secret, metadata,
        fallback=oidc.provider_preset.client_auth_methods,
    )
    return auth, True


#: A person's login scopes that a machine's grant leaves out of `OIDCParams.scopes`: it
#: gets no ID token and no refresh token, and providers refuse them for client
#: credentials (Okta, Entra) rather than ignore them.
LOGIN_ONLY_SCOPES = frozenset(LOGIN_SCOPES)


def _scope(scopes: Sequence[str], oidc: OIDCParams) -> str:
    """The `scope` a grant asks for: its own as given, else the client's
    (`OIDCParams.scopes`) without `LOGIN_ONLY_SCOPES`."""
    chosen = tuple(scopes) or normalize_scopes(oidc.scopes, drop=LOGIN_ONLY_SCOPES)
    return " ".join(chosen)


def _check_scopes(scopes: Sequence[str], what: str) -> tuple[str, ...]:
    return checked_scopes(scopes, f"{what} scopes", '["api:read"]')


class ClientCredentials(Grant):
    """The client credentials grant (RFC 6749 section 4.4): the client is the principal.

    Args:
        scopes: the scopes to ask for (default: `OIDCParams.scopes` without openid
            and offline_access).
        assertion_key: authenticate with private_key_jwt (RFC 7523), signing with this
            private key: a PEM file path, PEM text or bytes, or a private JWK dict.
            None: with `OIDCParams.client_secret`.

    The audience (`OIDCParams.audience`) travels as `OIDCParams.audience_param` says
    (RFC 8707 `resource` by default).
    """

    def __init__(
        self, scopes: Sequence[str] = (), *, assertion_key: AssertionKeyInput | None = None
    ) -> None:
        self.scopes = _check_scopes(scopes, "ClientCredentials")
        self._key = AssertionKey(assertion_key) if assertion_key is not None else None

    def __repr__(self) -> str:
        auth = "private_key_jwt" if self._key is not None else "client_secret"
        return f"ClientCredentials(scopes={list(self.scopes)!r}, auth={auth})"

    def prepare(self, oidc: OIDCParams, metadata: ProviderMetadata, now: float) -> GrantRequest:
        from ._protocol import add_audience

        form = {"grant_type": "client_credentials", "client_id": oidc.client_id}
        scope = _scope(self.scopes, oidc)
        if scope:
            form["scope"] = scope
        add_audience(form, oidc.audience, oidc.audience_param)
        client, replayable = _authenticate(oidc, metadata, self._key, form, now, required=True)
        return GrantRequest(form, client, replayable)

    def refused(self, exc: OAuthError, request: GrantRequest, now: float) -> Exception:
        if exc.error in ("invalid_client", "unauthorized_client"):
            exc.hint = (
                "check the client's secret or key and that the provider allows it the"
                " client_credentials grant"
            )
        return exc


class TokenExchange(Grant):
    """The token exchange grant (RFC 8693): trade a subject token for an access token.

    Args:
        subject: where the subject token comes from (`GitHubActionsToken`,
            `KubernetesToken`, `FileToken`, `EnvToken`, `ExecToken`, or any `SubjectToken`).
        audience: the RFC 8693 `audience` to ask for.
        resource: the RFC 8693 / RFC 8707 `resource` to ask for. With neither,
            `OIDCParams.audience` travels as `OIDCParams.audience_param` says.
        scopes: the scopes to ask for (default: `OIDCParams.scopes` without openid
            and offline_access).
        actor: an actor token's source (delegation, RFC 8693 section 1.1), optional.
        requested_token_type: the `requested_token_type` ("" sends none).
        assertion_key: authenticate the client with private_key_jwt; otherwise with
            `OIDCParams.client_secret` when there is one, else as a public client.
    """

    def __init__(
        self,
        subject: SubjectToken,
        *,
        audience: str = "",
        resource: str = "",
        scopes: Sequence[str] = (),
        actor: SubjectToken | None = None,
        requested_token_type: str = "",
        assertion_key: AssertionKeyInput | None = None,
    ) -> None:
        for what, source in (("subject", subject), ("actor", actor)):
            if source is not None and not isinstance(source, SubjectToken):
                raise ConfigError(
                    f"TokenExchange's {what} must be a subject token source (read() and"
                    " token_type)",
                    hint="for example TokenExchange(GitHubActionsToken('my-audience'))",
                )
        self.subject = subject
        self.actor = actor
        self.audience = audience
        self.resource = resource
        self.scopes = _check_scopes(scopes, "TokenExchange")
        self.requested_token_type = requested_token_type
        self._key = AssertionKey(assertion_key) if assertion_key is not None else None

    def __repr__(self) -> str:
        return f"TokenExchange(subject={self.subject!r}, audience={self.audience!r})"

    def prepare(self, oidc: OIDCParams, metadata: ProviderMetadata, now: float) -> GrantRequest:
        from ._protocol import add_audience

        subject = self.subject.read()
        form = {
            "grant_type": TOKEN_EXCHANGE_GRANT,
            "client_id": oidc.client_id,
            "subject_token": subject,
            "subject_token_type": self.subject.token_type,
        }
        if self.actor is not None:
            form["actor_token"] = self.actor.read()
            form["actor_token_type"] = self.actor.token_type
        if self.audience:
            form["audience"] = self.audience
        if self.resource:
            form["resource"] = self.resource
        if not (self.audience or self.resource):
            add_audience(form, oidc.audience, oidc.audience_param)
        scope = _scope(self.scopes, oidc)
        if scope:
            form["scope"] = scope
        if self.requested_token_type:
            form["requested_token_type"] = self.requested_token_type
        client, replayable = _authenticate(oidc, metadata, self._key, form, now,
                                           required=False)
        return GrantRequest(form, client, replayable)

    def refused(self, exc: OAuthError, request: GrantRequest, now: float) -> Exception:
        if exc.error not in SUBJECT_ERRORS:
            return exc
        expiry = _jwt_expiry(request.form.get("subject_token", ""))
        said = f"{exc.error}" + (f": {exc.description}" if exc.description else "")
        if expiry is not None and expiry <= now:
            when = datetime.fromtimestamp(expiry, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            return SubjectTokenError(
                f"the subject token from {self.subject!r} expired at {when}; the provider"
                f" refused the token exchange ({said})",
                error=exc.error, description=exc.description, expired=True,
                hint="the token source must hand out a current token (a rotated file, a new"
                " CI token); check that whatever renews it still runs",
            )
        return SubjectTokenError(
            f"the provider refused the subject token from {self.subject!r} ({said})",
            error=exc.error, description=exc.description,
            hint="check that the provider trusts the token's issuer and audience, and that"
            " it has not expired",
        )


def _jwt_expiry(token: str) -> float | None:
    """The `exp` of a JWT, not verified (only to say "expired" in an error); None when
    the token is not a JWT or has none."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, UnicodeDecodeError):
        return None
    exp = payload.get("exp") if isinstance(payload, dict) else None
    if isinstance(exp, bool) or not isinstance(exp, (int, float)):
        return None
    return float(exp)


def run_grant(
    grant: Grant,
    oidc: OIDCParams,
    metadata: ProviderMetadata,
    http: IdPHttp,
    clock: Callable[[], float],
) -> Token:
    """Send the grant's token request and parse the answer (the token source's driver).

    Raises:
        OAuthError, SubjectTokenError: the provider refused it (see `Grant.refused`).
        TransportError: the provider could not be reached.
        ConfigError: the grant cannot be prepared (no credentials, a missing token file).
    """
    from ._token import parse_token_response

    request = grant.prepare(oidc, metadata, clock())
    log.debug("requesting a token with %r", grant)
    try:
        _, doc = http.post_form(
            metadata.token_endpoint, request.form, client=request.client,
            replayable=request.replayable,
        )
    except OAuthError as exc:
        raise grant.refused(exc, request, clock()) from None
    return parse_token_response(doc, clock())
