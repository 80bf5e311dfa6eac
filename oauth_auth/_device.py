"""The device authorization grant driver (RFC 8628): log in where no browser can run.

The user is told (on stderr) where to go and which code to enter, the opener is offered
the verification URI (an in-process opener its complete form when given, as gh does; a
browser command never, since every local user can read its arguments and the user code
in them would let another user approve this login with their own account), and the
token endpoint
is polled at the provider's pace: `interval` (default 5 s), `authorization_pending`,
`slow_down` (+5 s for good), until approval, denial, expiry of the device code or the
login's own timeout. Time is read from an injected clock and waited with an injected
sleep, so tests run instantly; Ctrl-C (KeyboardInterrupt from `sleep`) ends it at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TextIO

from ._authorize import (
    SLOW_DOWN_INCREMENT,
    PollAction,
    build_device_authorization_request,
    build_device_token_request,
    device_poll_action,
    parse_device_authorization,
)
from .errors import LoginError, OAuthError, TransportError

if TYPE_CHECKING:
    from ._discovery import ProviderMetadata
    from ._http import IdPHttp
    from ._protocol import ClientAuthentication

__all__ = ["MAX_INTERVAL", "device_login"]

log = logging.getLogger("oauth_auth")

#: Upper bound on the polling interval, however often the provider says `slow_down` or
#: however long a network outage makes us back off (seconds).
MAX_INTERVAL = 60.0


def _login_error_from(exc: OAuthError, what: str) -> LoginError:
    err = LoginError(
        f"the identity provider refused the {what}: {exc.error}"
        + (f" ({exc.description})" if exc.description else ""),
        error=exc.error,
        description=exc.description,
        hint="check that the client may use the device grant at the identity provider",
    )
    err.__cause__ = exc
    return err


def device_login(
    *,
    client_id: str,
    scopes: Iterable[str],
    audience: str,
    metadata: ProviderMetadata,
    client: ClientAuthentication | None = None,
    audience_param: str = "resource",
    extra_params: Mapping[str, str] | None = None,
    http: IdPHttp,
    open_url: Callable[[str], object] | None,
    open_complete: bool = False,
    stderr: TextIO,
    deadline: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> dict[str, Any]:
    """Run the device grant; return the token endpoint's successful JSON response.

    Args:
        client_id: the public client.
        scopes: the scopes to request (already with openid/offline_access as wanted).
        audience: RFC 8707 resource, "" for none.
        metadata: the provider's metadata; must name a device authorization endpoint.
        client: how the client authenticates on both requests (None: client_id only).
        audience_param: how the audience travels ("resource", "audience", "").
        extra_params: the `auth_params`, added to the device authorization request.
        http: the IdP client.
        open_url: called with the verification URI; failures are ignored, the printed
            instructions are enough. None: don't open anything.
        open_complete: give `open_url` the complete form (with the user code) when the
            provider sent one: only for a callable that runs in this process, never for
            a browser command (its arguments are readable by every local user).
        stderr: where the instructions go.
        deadline: `clock()` value at which the login gives up (also capped by the
            device code's `expires_in`).
        clock: monotonic seconds.
        sleep: waits between polls (KeyboardInterrupt from it ends the login).

    Raises:
        LoginError: denied, expired, timed out, or refused by the provider.
        TransportError: the provider could not be reached.
    """
    endpoint = metadata.device_authorization_endpoint
    if not endpoint:
        raise LoginError(
            "the identity provider does not advertise a device authorization endpoint",
            error="unsupported_grant_type",
            hint="use the browser login instead (--no-browser prints its URL)",
        )
    scope_list = list(scopes)
    try:
        _, doc = http.post_form(
            endpoint,
            build_device_authorization_request(
                client_id=client_id,
                scopes=scope_list,
                audience=audience,
                audience_param=audience_param,
                extra_params=extra_params,
            ),
            client=client,
        )
    except OAuthError as exc:
        raise _login_error_from(exc, "device login request") from exc
    grant = parse_device_authorization(doc)
    if grant.expires_in:
        deadline = min(deadline, clock() + grant.expires_in)

    print(
        f"To log in, open {grant.verification_uri} in a browser on any device"
        f" and enter the code: {grant.user_code}",
        file=stderr,
    )
    if grant.verification_uri_complete:
        print(f"  (or open {grant.verification_uri_complete} directly)", file=stderr)
    print("Waiting for the login to be approved...", file=stderr)
    stderr.flush()
    if open_url is not None:
        try:
            complete = grant.verification_uri_complete if open_complete else ""
            open_url(complete or grant.verification_uri)
        except Exception:  # the printed instructions are the fallback
            log.debug("could not open the verification URI", exc_info=True)

    form = build_device_token_request(
        device_code=grant.device_code,
        client_id=client_id,
        audience=audience,
        audience_param=audience_param,
    )
    interval = grant.interval
    backoff = 0.0  # extra wait after transport failures (RFC 8628 section 3.5: back off)
    last_transport_error: TransportError | None = None
    while True:
        remaining = deadline - clock()
        if remaining <= 0:
            if last_transport_error is not None:
                raise last_transport_error
            raise LoginError(
                "the device login timed out before it was approved",
                error="timeout",
                hint="run the login again and approve it sooner, or raise the timeout",
            )
        sleep(min(interval + backoff, remaining))
        try:
            # Not replayed by the HTTP layer: polling again is this loop's decision.
            _, token = http.post_form(
                metadata.token_endpoint, form, client=client, replayable=False
            )
        except OAuthError as exc:
            last_transport_error = None
            backoff = 0.0
            if device_poll_action(exc.error, exc.description) is PollAction.SLOW_DOWN:
                interval = min(interval + SLOW_DOWN_INCREMENT, MAX_INTERVAL)
                log.debug("device login: slow_down, polling every %.0f s now", interval)
            continue
        except TransportError as exc:
            # A blip during a minutes-long wait should not throw the user's approval away.
            last_transport_error = exc
            backoff = min(max(backoff * 2, interval), MAX_INTERVAL)
            log.debug("device login: poll failed (%s), backing off", exc)
            continue
        return token
