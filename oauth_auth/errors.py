"""The errors oauth-auth raises: one tree, so callers can catch as broadly as they like.

```
OAuthAuthError                    base of everything this library raises
├── LoginRequiredError            no usable credentials and not interactive (CLI exit 4)
├── OAuthError                    the IdP answered with an OAuth error response
│   └── InvalidGrantError         the refresh token or authorization code is dead
├── SecretsError                  the secrets backend failed, or none was configured
├── TransportError                the IdP was unreachable or answered 5xx/429 (retryable)
├── LoginError                    the interactive login failed (state, timeout, denied...)
├── LockTimeoutError              another process held the refresh lock for too long
├── SubjectTokenError             a machine's subject token could not be had, or was refused
└── ConfigError                   a bad argument, config file or provider document (ValueError)
```

Every message says what went wrong and what to do next. None of them ever contains a
token, an authorization code, a PKCE verifier or a refresh token: messages are built from
OAuth error codes and descriptions, URLs and key names only, never from response bodies.
"""

from __future__ import annotations

from typing import TypeVar

__all__ = [
    "ConfigError",
    "InvalidGrantError",
    "LoginError",
    "LockTimeoutError",
    "LoginRequiredError",
    "OAuthAuthError",
    "OAuthError",
    "SecretsError",
    "SubjectTokenError",
    "TransportError",
    "clip_text",
    "fresh_copy",
    "short_error",
]

_E = TypeVar("_E", bound=BaseException)


class OAuthAuthError(Exception):
    """Base class of every error raised by oauth-auth.

    Attributes:
        hint: one line telling the user what to do next (may be empty).
    """

    hint: str = ""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        if hint:
            self.hint = hint

    @property
    def message(self) -> str:
        """The message without the hint."""
        return str(self.args[0]) if self.args else ""

    def __str__(self) -> str:
        msg = self.message
        return f"{msg} ({self.hint})" if self.hint and self.hint not in msg else msg


class LoginRequiredError(OAuthAuthError):
    """No usable credentials were found and the token source may not log in interactively."""

    hint = "log in interactively first (for example `oauth-auth login`)"


class OAuthError(OAuthAuthError):
    """An OAuth error response from the identity provider (RFC 6749 section 5.2).

    Carries the provider's `error` code, `error_description` and `error_uri`, never the raw
    response body (which could echo back a token or a code).
    """

    def __init__(
        self,
        error: str,
        description: str = "",
        *,
        error_uri: str = "",
        status_code: int | None = None,
        retryable: bool = False,
        hint: str = "",
    ) -> None:
        self.error = error
        self.description = description
        self.error_uri = error_uri
        self.status_code = status_code
        self.retryable = retryable
        text = f"identity provider error {error!r}"
        if description:
            text += f": {description}"
        if not hint and not type(self).hint:
            hint = _OAUTH_ERROR_HINTS.get(error, _OAUTH_ERROR_HINT)
        super().__init__(text, hint=hint)

    @property
    def error_description(self) -> str:
        """Alias of `description`, named as in RFC 6749."""
        return self.description

    def __reduce__(self) -> tuple[object, ...]:
        # Keep pickling (multiprocessing, concurrent.futures) working with keyword fields.
        return (
            _rebuild_oauth_error,
            (type(self), self.error, self.description, self.error_uri, self.status_code,
             self.retryable, self.hint),
        )


#: What to do next after an OAuth error that came with no more specific hint.
_OAUTH_ERROR_HINT = (
    "check the client's settings at the identity provider (client id, scopes, audience)"
)
_OAUTH_ERROR_HINTS = {
    "invalid_response": "the identity provider (or a proxy in front of it) sent an answer"
    " that is not a usable OAuth response; try again later, and tell its administrators"
    " if it persists",
    "server_error": "the identity provider has a problem; try again later",
    "temporarily_unavailable": "the identity provider is busy or down; try again later",
}


def _rebuild_oauth_error(
    cls: type[OAuthError],
    error: str,
    description: str,
    error_uri: str,
    status_code: int | None,
    retryable: bool,
    hint: str,
) -> OAuthError:
    return cls(error, description, error_uri=error_uri, status_code=status_code,
               retryable=retryable, hint=hint)


class InvalidGrantError(OAuthError):
    """The refresh token (or authorization code) was rejected: the session is over."""

    hint = "the session has ended; log in again"


class SecretsError(OAuthAuthError):
    """The secrets backend failed (locked, missing, read-only, timed out), or none was set."""

    hint = "check the secrets backend (keyring) configuration"


class TransportError(OAuthAuthError):
    """The identity provider could not be reached, timed out, or answered 5xx/429.

    `retryable` is always True: the same call may succeed later, and nothing stored was
    deleted because of it.
    """

    retryable = True
    hint = "the identity provider may be down or unreachable; try again later"

    def __init__(self, message: str, *, status_code: int | None = None, hint: str = "") -> None:
        self.status_code = status_code
        super().__init__(message, hint=hint)


class LoginError(OAuthAuthError):
    """The interactive login failed: denied, timed out, state or ID-token mismatch, busy port."""

    def __init__(self, message: str, *, error: str = "", description: str = "",
                 hint: str = "") -> None:
        self.error = error
        self.description = description
        super().__init__(message, hint=hint)


class ConfigError(OAuthAuthError, ValueError):
    """A bad argument, a corrupt config file, or a provider document that fails validation."""


class SubjectTokenError(OAuthAuthError):
    """A token exchange's subject token (RFC 8693) could not be obtained or was refused.

    Its source failed (a command that exited non-zero, GitHub refusing the job's token
    request, an empty file), or the provider refused the token exchange because of the
    subject token (expired, an untrusted issuer or audience). `error` and `description`
    are the provider's when it answered; `expired` is True when the token's own `exp`
    says it had expired.
    """

    hint = "check where the subject token comes from (CI job permissions, token file)"

    def __init__(self, message: str, *, error: str = "", description: str = "",
                 expired: bool = False, hint: str = "") -> None:
        self.error = error
        self.description = description
        self.expired = expired
        super().__init__(message, hint=hint)


class LockTimeoutError(OAuthAuthError):
    """Another process held the cross-process refresh lock longer than the lock timeout."""

    def __init__(self, message: str, *, path: str = "", hint: str = "") -> None:
        self.path = path
        super().__init__(message, hint=hint)


def fresh_copy(exc: _E) -> _E:
    """A copy of a kept exception instance, to raise instead of the instance itself.

    Raising one instance again and again grows its `__traceback__` by the raising frames
    every time (and keeps every frame and its locals alive); a copy starts clean. An
    exception that cannot be copied is raised itself, with its traceback cleared.
    """
    try:
        import copy  # here, not at import: `oauth-auth token`'s cache hit never needs it

        clone = copy.copy(exc)
    except Exception:  # noqa: BLE001 - a caller's exception type may refuse copying
        clone = exc
    clone.__traceback__ = None
    return clone


def clip_text(text: str, limit: int = 300) -> str:
    """`text` cut to `limit` characters, every unprintable one (a terminal escape, a line
    break) shown as "?": what a provider or a callback says ends up in our messages, and
    from there on terminals and HTML pages."""
    return "".join(ch if ch.isprintable() else "?" for ch in text[:limit])


def short_error(exc: BaseException) -> str:
    """One line naming an error, for warnings (our errors never contain secrets)."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
