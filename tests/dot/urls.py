"""URLs: DOT under /o/ (issuer <origin>/o), Django's login view, the bench's admin API."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.urls import URLPattern, URLResolver, include, path
from oauth2_provider import urls as dot_urls

from tests.dot import bench

urlpatterns: list[URLPattern | URLResolver] = [
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("__bench/counts", bench.counts_view),
    path("__bench/reset", bench.reset_view),
    path("__bench/fault", bench.fault_view),
    path("__bench/config", bench.config_view),
    path("__bench/revoke-all", bench.revoke_all_view),
]

if settings.BENCH.get("root_metadata"):
    # RFC 8414 section 3.1's path-inserted form, /.well-known/oauth-authorization-server/o,
    # which DOT's docs say to mount at the root in addition to the /o/ one.
    urlpatterns += dot_urls.metadata_urlpatterns
