"""Sans-IO authorization code + PKCE and device grant messages (RFC 6749, 7636, 8628, 9207).

Everything here is a pure function of its inputs (randomness is injectable), so the
security-relevant decisions of an interactive login -- which parameters go into the
authorization URL, whether a callback belongs to our request, what the code exchange and
the device polls send, how a poll answer is interpreted -- are unit-tested without sockets.
The drivers (`_loopback`, `_device`, `_login`) only move bytes.

Nothing here puts a code, verifier or token into an exception message or a `repr`.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import secrets
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from ._discovery import ProviderMetadata, is_loopback_host
from ._keys import normalize_scopes
from ._params import PROTECTED_AUTH_PARAMS
from ._protocol import add_audience
from .errors import ConfigError, LoginError, clip_text

__all__ = [
    "CALLBACK_PATH",
    "DEFAULT_DEVICE_INTERVAL",
    "DEVICE_CODE_GRANT_TYPE",
    "MIN_DEVICE_INTERVAL",
    "PROTECTED_PARAMS",
    "SLOW_DOWN_INCREMENT",
    "AuthorizationRequest",
    "DeviceAuthorization",
    "PollAction",
    "StateMismatch",
    "build_authorization_request",
    "build_code_exchange",
    "build_device_authorization_request",
    "build_device_token_request",
    "code_challenge_s256",
    "device_poll_action",
    "format_redirect_uri",
    "login_scopes",
    "new_code_verifier",
    "new_random_token",
    "parse_callback",
    "parse_device_authorization",
    "prompt_value",
    "wants_offline_access",
]

#: The redirect URI's path; ToolHive's, so one client registration serves both tools.
CALLBACK_PATH = "/callback"
#: RFC 8628 section 3.4 grant type for polling the token endpoint.
DEVICE_CODE_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"
#: RFC 8628 section 3.2: the polling interval when the provider names none.
DEFAULT_DEVICE_INTERVAL = 5.0
#: The shortest polling interval we follow, whatever the provider says (seconds).
MIN_DEVICE_INTERVAL = 1.0
#: RFC 8628 section 3.5: seconds added to the interval on every `slow_down`.
SLOW_DOWN_INCREMENT = 5.0
#: Bytes of randomness behind the PKCE verifier (43 base64url characters, RFC 7636 4.1).
VERIFIER_BYTES = 32
#: Bytes of randomness behind `state` and `nonce`.
TOKEN_BYTES = 32

#: Authorization parameters that tie the response to this very request; callers may not
#: override them through `extra_params`, or the state/nonce/PKCE checks would be void.
#: (One rule: the same set `OIDCParams.auth_params` is checked against.)
PROTECTED_PARAMS = PROTECTED_AUTH_PARAMS

RandBytes = Callable[[int], bytes]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def new_code_verifier(randbytes: RandBytes = secrets.token_bytes) -> str:
    """A fresh PKCE code verifier: 32 random bytes, base64url without padding.

    Args:
        randbytes: the source of randomness (tests inject a deterministic one).
    """
    return _b64url(randbytes(VERIFIER_BYTES))


def code_challenge_s256(verifier: str) -> str:
    """The S256 code challenge of a verifier (RFC 7636 section 4.2)."""
    return _b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def new_random_token(randbytes: RandBytes = secrets.token_bytes) -> str:
    """An unguessable value for `state` or `nonce`."""
    return _b64url(randbytes(TOKEN_BYTES))


def login_scopes(
    scopes: Iterable[str], *, openid: bool = True, offline_access: bool = True
) -> list[str]:
    """The scopes a login asks for: the configured ones, then `openid` and `offline_access`.

    Normalized by `_keys.normalize_scopes` (order kept, duplicates dropped, so the scope
    string is stable and readable). `openid` makes the provider return an ID token we can
    check the nonce in (not for an OAuth-only server); `offline_access` asks for the
    refresh token that lets the session outlive the process (see `wants_offline_access`
    for when).
    """
    extra = (*(("openid",) if openid else ()), *(("offline_access",) if offline_access else ()))
    return normalize_scopes(scopes, add=extra)


def wants_offline_access(setting: bool | None, scopes_supported: Sequence[str]) -> bool:
    """Whether a login asks for `offline_access` (pure).

    True and False are the caller's word (True is ToolHive's rule: always). None asks
    for it when the provider lists it in `scopes_supported` or lists no scopes at all.
    """
    if setting is not None:
        return setting
    return not scopes_supported or "offline_access" in scopes_supported


def prompt_value(setting: str | None, offline_access: bool) -> str:
    """The `prompt` parameter to send, "" for none (pure).

    None: `consent` exactly when `offline_access` is asked for (OIDC Core section 11 lets
    a provider ignore `offline_access` without it); "" sends none (tenants that restrict
    user consent answer `consent` with "Need admin approval"); any other value as given.
    """
    if setting is None:
        return "consent" if offline_access else ""
    return setting


def format_redirect_uri(host: str, port: int) -> str:
    """The loopback redirect URI `http://<host>:<port>/callback` (IPv6 literals bracketed).

    Raises:
        ConfigError: the host is not a loopback host (RFC 8252 section 7.3 needs one).
    """
    bare = host.strip("[]")
    if not is_loopback_host(bare):
        raise ConfigError(
            f"callback host {host!r} is not a loopback host",
            hint="use localhost, 127.0.0.1 or ::1",
        )
    netloc = f"[{bare}]" if ":" in bare else bare
    return f"http://{netloc}:{port}{CALLBACK_PATH}"


@dataclass(frozen=True)
class AuthorizationRequest:
    """One authorization request and the secrets needed to finish it.

    `url`, `code_verifier`, `state` and `nonce` are kept out of the repr: they are what
    an attacker would need to complete (or forge) this login (the URL carries the state
    and the nonce).
    """

    url: str = field(repr=False)
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str = field(repr=False)
    nonce: str = field(repr=False)
    code_verifier: str = field(repr=False)

    @property
    def wants_id_token(self) -> bool:
        """True when `openid` was requested, so the token response must carry an ID token."""
        return "openid" in self.scopes


def _allowed_extra_params(extra_params: Mapping[str, str] | None) -> dict[str, str]:
    """`auth_params` as a new dict, refused when they would override a parameter that
    binds the response to this request (state, nonce, PKCE, redirect URI, client id):
    the one rule for the authorization and the device authorization requests."""
    extra = dict(extra_params or {})
    forbidden = sorted(PROTECTED_PARAMS.intersection(extra))
    if forbidden:
        raise ConfigError(
            f"extra authorization parameters may not override {', '.join(forbidden)}",
            hint="these parameters bind the response to this login request",
        )
    return extra


def build_authorization_request(
    *,
    metadata: ProviderMetadata,
    client_id: str,
    redirect_uri: str,
    scopes: Iterable[str],
    audience: str = "",
    extra_params: Mapping[str, str] | None = None,
    randbytes: RandBytes = secrets.token_bytes,
    prompt: str | None = None,
    audience_param: str = "resource",
) -> AuthorizationRequest:
    """Build the authorization URL for the code flow with PKCE (S256), state and nonce.

    `scopes` are sent as given (callers pass `login_scopes(...)`). `prompt` follows
    `prompt_value` (None: `consent` when `offline_access` is requested). The audience
    travels as `audience_param` (RFC 8707 `resource` by default).
    `extra_params` add or override parameters; an empty value removes one (for example
    `{"prompt": ""}`); the parameters in `PROTECTED_PARAMS` cannot be overridden.

    Raises:
        ConfigError: no authorization endpoint, a provider that cannot do S256, or an
            attempt to override a protected parameter.
    """
    if not metadata.authorization_endpoint:
        raise ConfigError(
            "the provider advertises no authorization_endpoint, so the browser login cannot"
            " run",
            hint="use the device login (--device) if the provider supports it",
        )
    methods = metadata.code_challenge_methods_supported
    if methods and "S256" not in methods:
        raise ConfigError(
            "the provider does not support PKCE with S256"
            f" (code_challenge_methods_supported: {', '.join(methods)})",
            hint="enable S256 PKCE for this client at the identity provider",
        )
    extra = _allowed_extra_params(extra_params)

    scope_list = tuple(scopes)
    verifier = new_code_verifier(randbytes)
    state = new_random_token(randbytes)
    nonce = new_random_token(randbytes)
    params: dict[str, str] = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": " ".join(scope_list),
        "state": state,
        "nonce": nonce,
        "code_challenge": code_challenge_s256(verifier),
        "code_challenge_method": "S256",
    }
    add_audience(params, audience, audience_param)
    prompt_param = prompt_value(prompt, "offline_access" in scope_list)
    if prompt_param:
        params["prompt"] = prompt_param
    for name, value in extra.items():
        if value == "":
            params.pop(name, None)
        else:
            params[name] = value
    final_scopes = tuple(params.get("scope", "").split())
    if not final_scopes:
        params.pop("scope", None)  # optional in OAuth (RFC 6749 3.3): the server's default
    if "openid" not in final_scopes:
        # `nonce` is OpenID Connect's: an OAuth-only request must not carry it (servers
        # refuse it without `openid`), and there is no ID token to find it in.
        params.pop("nonce", None)

    parts = urlsplit(metadata.authorization_endpoint)
    # Keep any query the provider put in its endpoint URL (OAuth 2.0 section 3.1 allows it),
    # but our parameters win over its parameters of the same name.
    query = [
        (k, v)
        for k, values in parse_qs(parts.query, keep_blank_values=True).items()
        for v in values
        if k not in params
    ]
    query.extend(params.items())
    url = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))
    return AuthorizationRequest(
        url=url,
        redirect_uri=redirect_uri,
        scopes=final_scopes,
        state=state,
        nonce=nonce,
        code_verifier=verifier,
    )


class StateMismatch(Exception):
    """A callback that does not carry our `state`: not ours, so it is ignored.

    Not a `LoginError` on purpose: it must not end the flow (an attacker or a stale tab
    must not be able to abort the user's login), only be answered with an error page.

    Attributes:
        error: the `error` parameter the stray callback carried, if any (for the page).
        description: its `error_description`, if any.
    """

    def __init__(self, error: str = "", description: str = "") -> None:
        super().__init__("the callback's state does not match this login")
        self.error = error
        self.description = description


def _single(query: Mapping[str, list[str]], name: str) -> str | None:
    """The one value of a query parameter; None when absent.

    A repeated parameter is refused (RFC 6749 section 3.1: parameters MUST NOT be
    included more than once), so we never guess which copy the provider meant.
    """
    values = query.get(name)
    if values is None:
        return None
    if len(values) != 1:
        raise LoginError(
            f"the callback repeats the {name!r} parameter",
            error="invalid_request",
            hint="try logging in again",
        )
    return values[0]


def parse_callback(
    query: str,
    *,
    expected_state: str,
    issuer: str,
    require_iss: bool = False,
) -> str:
    """Check a redirect's query string and return the authorization code.

    The order matters: `state` first (a callback that is not ours must not be able to end
    or influence the flow), then `iss` (RFC 9207: checked on error responses too, so a
    mix-up attacker cannot inject an error), then `error`, then `code`.

    Args:
        query: the raw query string of the callback request.
        expected_state: the `state` sent in the authorization request.
        issuer: the provider's issuer identifier from its metadata.
        require_iss: the provider advertises `authorization_response_iss_parameter_supported`,
            so a missing `iss` is an error too.

    Raises:
        StateMismatch: `state` is missing or different; the flow should keep waiting.
        LoginError: the callback is ours but failed (`error=`, bad `iss`, no code).
    """
    try:
        params = parse_qs(query, keep_blank_values=True, strict_parsing=False)
    except ValueError:
        raise StateMismatch() from None
    state_values = params.get("state", [])
    error_values = params.get("error", [""])
    desc_values = params.get("error_description", [""])
    stray_error = clip_text(error_values[0], 100)
    stray_desc = clip_text(desc_values[0])
    if len(state_values) != 1 or not hmac.compare_digest(
        state_values[0].encode("utf-8", "replace"), expected_state.encode("utf-8")
    ):
        raise StateMismatch(stray_error, stray_desc)

    iss = _single(params, "iss")
    if iss is None:
        if require_iss:
            raise LoginError(
                "the authorization response has no 'iss' parameter although the provider"
                " promises one (RFC 9207)",
                error="invalid_request",
                hint="the response may come from another provider (mix-up attack); log in"
                " again",
            )
    elif iss != issuer:
        raise LoginError(
            f"the authorization response comes from issuer {clip_text(iss)!r}, not {issuer!r}",
            error="invalid_request",
            hint="the response may come from another provider (mix-up attack); log in again",
        )

    error = _single(params, "error")
    if error is not None:
        code = clip_text(error, 100) or "unknown_error"
        description = clip_text(_single(params, "error_description") or "")
        text = f"the identity provider refused the login: {code}"
        if description:
            text += f" ({description})"
        hint = (
            "the login was cancelled or denied; run the login again to retry"
            if code == "access_denied"
            else "check the client's configuration at the identity provider"
        )
        raise LoginError(text, error=code, description=description, hint=hint)

    code_value = _single(params, "code")
    if not code_value:
        raise LoginError(
            "the authorization response carries no authorization code",
            error="invalid_request",
            hint="log in again",
        )
    return code_value


def build_code_exchange(
    *,
    code: str,
    redirect_uri: str,
    client_id: str,
    code_verifier: str,
    audience: str = "",
    audience_param: str = "resource",
) -> dict[str, str]:
    """The token request form that exchanges an authorization code.

    The redirect URI must be identical to the authorization request's (RFC 6749 4.1.3);
    client_id is in the form for a public client, and `_protocol.encode_client_auth`
    moves it where a confidential client's method wants it.
    """
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": client_id,
        "code_verifier": code_verifier,
    }
    add_audience(form, audience, audience_param)
    return form


# --- Device authorization grant (RFC 8628) -------------------------------------------------


def build_device_authorization_request(
    *,
    client_id: str,
    scopes: Iterable[str],
    audience: str = "",
    audience_param: str = "resource",
    extra_params: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The form posted to the device authorization endpoint (RFC 8628 section 3.1).

    `extra_params` (the `auth_params`) are added; an empty value removes one; they cannot
    override `client_id`.
    """
    form = {"client_id": client_id, "scope": " ".join(scopes)}
    add_audience(form, audience, audience_param)
    extra = _allowed_extra_params(extra_params)
    for name, value in extra.items():
        if value == "":
            form.pop(name, None)
        else:
            form[name] = value
    return form


_USER_CODE_CHARS = frozenset(string.ascii_letters + string.digits + "-_ .")


@dataclass(frozen=True)
class DeviceAuthorization:
    """The provider's answer to a device authorization request (RFC 8628 section 3.2).

    `device_code` is the poller's secret and stays out of the repr; `user_code` is shown
    to the user anyway.
    """

    device_code: str = field(repr=False)
    user_code: str
    verification_uri: str
    verification_uri_complete: str = ""
    expires_in: float = 0.0
    interval: float = DEFAULT_DEVICE_INTERVAL


def _web_url(value: object) -> str | None:
    """The value if it is an absolute https URL (http only on a loopback address) made of
    printable characters: the user types their code on that page, so a plain-http page
    elsewhere would hand the code to whoever is on the network path."""
    if not isinstance(value, str) or not value or not value.isprintable():
        return None
    try:
        parts = urlsplit(value)
    except ValueError:  # "http://[x": not a URL at all
        return None
    if not parts.hostname or not (
        parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(parts.hostname))
    ):
        return None
    return value


def _positive_number(value: object, default: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return default
    return float(value)


def parse_device_authorization(doc: Mapping[str, Any]) -> DeviceAuthorization:
    """Validate a device authorization response.

    Strings shown to the user must be printable (a hostile provider must not be able to
    send terminal escape sequences), and the URIs must be https (http only on loopback);
    a complete URI that is not is dropped, and the interval is at least
    `MIN_DEVICE_INTERVAL`.

    Raises:
        LoginError: a required member is missing or malformed.
    """
    device_code = doc.get("device_code")
    user_code = doc.get("user_code")
    # "verification_url" is what some providers (Google) sent before RFC 8628 settled.
    uri = _web_url(doc.get("verification_uri") or doc.get("verification_url"))
    if not isinstance(device_code, str) or not device_code:
        raise LoginError(
            "the device authorization response has no device_code", error="invalid_response"
        )
    if (
        not isinstance(user_code, str)
        or not user_code
        or len(user_code) > 64
        or not set(user_code) <= _USER_CODE_CHARS
    ):
        raise LoginError(
            "the device authorization response has no usable user_code",
            error="invalid_response",
        )
    if uri is None:
        raise LoginError(
            "the device authorization response has no usable verification_uri (an https"
            " URL, or http on a loopback address)",
            error="invalid_response",
            hint="the identity provider's device login page must be served over https",
        )
    complete = _web_url(doc.get("verification_uri_complete")) or ""
    return DeviceAuthorization(
        device_code=device_code,
        user_code=user_code,
        verification_uri=uri,
        verification_uri_complete=complete,
        expires_in=_positive_number(doc.get("expires_in"), 0.0),
        # A floor, or a provider saying 0.01 gets 100 polls a second (RFC 8628 3.5 asks
        # the client to respect the interval; no provider needs one below a second).
        interval=max(_positive_number(doc.get("interval"), DEFAULT_DEVICE_INTERVAL),
                     MIN_DEVICE_INTERVAL),
    )


def build_device_token_request(
    *, device_code: str, client_id: str, audience: str = "", audience_param: str = "resource"
) -> dict[str, str]:
    """The token request form one device-grant poll sends (RFC 8628 section 3.4)."""
    form = {
        "grant_type": DEVICE_CODE_GRANT_TYPE,
        "device_code": device_code,
        "client_id": client_id,
    }
    add_audience(form, audience, audience_param)
    return form


class PollAction(enum.Enum):
    """What the device-grant poller does after a poll that returned an error."""

    WAIT = "wait"  # authorization_pending: poll again after the interval
    SLOW_DOWN = "slow_down"  # poll again after interval + SLOW_DOWN_INCREMENT, for good


def device_poll_action(error: str, description: str = "") -> PollAction:
    """Interpret an OAuth error answer to a device-grant poll (RFC 8628 section 3.5).

    Raises:
        LoginError: the login is over (`expired_token`, `access_denied`, or any other error).
    """
    if error == "authorization_pending":
        return PollAction.WAIT
    if error == "slow_down":
        return PollAction.SLOW_DOWN
    description = clip_text(description)
    if error == "expired_token":
        raise LoginError(
            "the device code expired before the login was approved",
            error=error,
            description=description,
            hint="run the login again and approve it sooner",
        )
    if error == "access_denied":
        raise LoginError(
            "the login was denied at the identity provider",
            error=error,
            description=description,
            hint="run the login again and approve the request",
        )
    text = f"the identity provider refused the device login: {clip_text(error, 100)}"
    if description:
        text += f" ({description})"
    raise LoginError(
        text,
        error=error,
        description=description,
        hint="check that the client may use the device grant at the identity provider",
    )
