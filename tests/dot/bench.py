"""The bench's hooks into the DOT server: request counts, fault injection, run-time settings.

`BenchMiddleware` sees every request first. It answers an injected fault instead of the
view, and counts what each OAuth endpoint answered, per grant type and outcome, so that a
test can say "exactly one refresh, no invalid_grant" about the real server. The counts,
faults and settings are read and changed over loopback HTTP at /__bench/... (JSON), by
tests/support/dot.py. The server is one process with threads, so a lock guards the state.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider.oauth2_validators import OAuth2Validator
from oauth2_provider.settings import oauth2_settings

from tests.dot.settings import oauth2_provider_settings

# The DOT URL names counted, and the name each gets in the counts.
ENDPOINTS = {
    "token": "token",
    "authorize": "authorization",
    "revoke-token": "revocation",
    "introspect": "introspection",
    "device-authorization": "device_authorization",
    "oidc-connect-discovery-info": "discovery",
    "oauth-server-metadata": "oauth_metadata",
    # RFC 8414 section 3.1's path-inserted form (/.well-known/oauth-authorization-server/o)
    "oauth-server-metadata-issuer": "oauth_metadata_inserted",
    "jwks-info": "jwks",
    "user-info": "userinfo",
}

_lock = threading.Lock()
_counts: dict[str, Any] = {}
_faults: list[dict[str, Any]] = []
_initial_bench: dict[str, Any] = copy.deepcopy(settings.BENCH)
_settings: dict[str, Any] = copy.deepcopy(settings.BENCH)


def _count(endpoint: str, grant: str | None, outcome: str) -> None:
    with _lock:
        if endpoint == "token":
            by_grant = _counts.setdefault("token", {}).setdefault(grant or "", {})
            by_grant[outcome] = by_grant.get(outcome, 0) + 1
        else:
            by_outcome = _counts.setdefault(endpoint, {})
            by_outcome[outcome] = by_outcome.get(outcome, 0) + 1


def _outcome(response: HttpResponse) -> str:
    if response.status_code == 200:
        return "ok"
    try:
        body = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return f"http_{response.status_code}"


# Endpoints where clients authenticate (RFC 6749 section 2.3, RFC 7009, RFC 7662, RFC 8628).
CLIENT_AUTH_ENDPOINTS = {"token", "revocation", "introspection", "device_authorization"}


def _client_auth(request: HttpRequest) -> str:
    """How the client authenticated: client_secret_basic, client_secret_post or none."""
    if request.META.get("HTTP_AUTHORIZATION", "").startswith("Basic "):
        return "client_secret_basic"
    if request.method == "POST" and request.POST.get("client_secret"):
        return "client_secret_post"
    return "none"


def _take_fault(path: str, grant: str | None) -> dict[str, Any] | None:
    with _lock:
        for fault in _faults:
            if fault["remaining"] <= 0 or fault["path"] != path:
                continue
            if fault.get("grant_type") and fault["grant_type"] != grant:
                continue
            fault["remaining"] -= 1
            return dict(fault)
    return None


class BenchMiddleware:
    """Count and (on request) fault the OAuth endpoints."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        grant = None
        if request.method == "POST" and request.path.endswith("/token/"):
            grant = request.POST.get("grant_type")
        fault = _take_fault(request.path, grant)
        if fault is not None:
            if fault.get("delay_ms"):
                time.sleep(fault["delay_ms"] / 1000)
            body = fault.get("body", {"error": "server_error"})
            response: HttpResponse = (
                JsonResponse(body, status=fault.get("status", 500))
                if isinstance(body, dict)
                else HttpResponse(body, status=fault.get("status", 500))
            )
            _count(_endpoint(request) or request.path, grant, "fault")
            _count("faults", None, request.path)
            return response
        endpoint = _endpoint(request)
        method = _client_auth(request) if endpoint in CLIENT_AUTH_ENDPOINTS else None
        if method is not None:
            _count("client_auth", None, f"{endpoint}:{method}")
            with _lock:
                allowed = _settings.get("auth_methods")
            if allowed is not None and method != "none" and method not in allowed:
                # DOT takes both methods whatever it advertises; the bench holds it to
                # what it advertised, as a strict server does.
                refused = JsonResponse({"error": "invalid_client",
                                        "error_description": f"{method} is not accepted"},
                                       status=401)
                _count(endpoint, grant, "invalid_client")
                return refused
        response = self.get_response(request)
        if endpoint is not None:
            _count(endpoint, grant, _outcome(response))
        return response


def _endpoint(request: HttpRequest) -> str | None:
    """The counted name of the DOT endpoint this request is for, if any."""
    from django.urls import Resolver404, resolve

    try:
        match = resolve(request.path_info)
    except Resolver404:
        return None
    return ENDPOINTS.get(match.url_name or "")


class BenchValidator(OAuth2Validator):
    """DOT's validator, with the standard profile claims in the ID token and userinfo."""

    oidc_claim_scope: ClassVar[dict[str, str]] = {
        **OAuth2Validator.oidc_claim_scope,
        "name": "profile", "email": "email", "preferred_username": "profile",
    }

    def get_additional_claims(self, request: Any) -> dict[str, Any]:
        user = request.user
        return {
            "preferred_username": user.get_username(),
            "name": user.get_full_name() or user.get_username(),
            "email": user.email,
        }


def _apply_settings(bench: dict[str, Any]) -> None:
    """Make DOT use the settings built from `bench`, from the next request on."""
    settings.OAUTH2_PROVIDER = oauth2_provider_settings(bench)
    oauth2_settings.reload()


def _json_body(request: HttpRequest) -> dict[str, Any]:
    if not request.body:
        return {}
    body = json.loads(request.body)
    if not isinstance(body, dict):
        raise ValueError("a JSON object is expected")
    return body


def _snapshot() -> dict[str, Any]:
    with _lock:
        return copy.deepcopy(_counts)


@csrf_exempt
def counts_view(request: HttpRequest) -> JsonResponse:
    """GET: {"token": {grant_type: {outcome: n}}, "authorization": {outcome: n}, ...}."""
    return JsonResponse(_snapshot())


@csrf_exempt
def reset_view(request: HttpRequest) -> JsonResponse:
    """POST {"all": bool}: zero the counts; with all, also drop faults and restore settings."""
    body = _json_body(request)
    with _lock:
        _counts.clear()
        if body.get("all"):
            _faults.clear()
            _settings.clear()
            _settings.update(copy.deepcopy(_initial_bench))
            changed = True
        else:
            changed = False
    if changed:
        _apply_settings(_settings)
    return JsonResponse({"ok": True})


@csrf_exempt
def fault_view(request: HttpRequest) -> JsonResponse:
    """POST {"path", "count", "status", "body", "grant_type", "delay_ms"}: answer the next
    `count` requests to `path` (with that grant type, for the token endpoint) with this."""
    body = _json_body(request)
    fault = {"remaining": int(body.pop("count", 1)), **body}
    with _lock:
        _faults.append(fault)
    return JsonResponse({"faults": len(_faults)})


@csrf_exempt
def config_view(request: HttpRequest) -> JsonResponse:
    """GET: the current bench settings; POST {name: value}: change them (see settings.py)."""
    if request.method == "POST":
        with _lock:
            _settings.update(_json_body(request))
            current = copy.deepcopy(_settings)
        _apply_settings(current)
    with _lock:
        shown = {k: v for k, v in _settings.items() if k not in ("rsa_private_key",
                                                                  "django_secret_key")}
    return JsonResponse({"settings": shown})


@csrf_exempt
def revoke_all_view(request: HttpRequest) -> JsonResponse:
    """POST: revoke every access and refresh token issued so far; returns how many."""
    from oauth2_provider.models import get_access_token_model, get_refresh_token_model

    refresh = get_refresh_token_model().objects.filter(revoked__isnull=True)
    revoked = 0
    for token in refresh:
        token.revoke()
        revoked += 1
    revoked += get_access_token_model().objects.all().delete()[0]
    return JsonResponse({"revoked": revoked})
