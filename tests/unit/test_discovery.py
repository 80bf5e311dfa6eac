"""Unit tests of provider metadata parsing and issuer checks (`_discovery`).

Regression tests (bugs the reliability suite found) live next to the unit they cover.
"""

from __future__ import annotations

import pytest


def test_malformed_urls_in_discovery_are_config_errors() -> None:
    from oauth_auth import ConfigError
    from oauth_auth._discovery import check_issuer_url, parse_metadata

    with pytest.raises(ConfigError, match="not a valid URL"):
        parse_metadata({"issuer": "https://idp.test", "token_endpoint": "https://[x"},
                       "https://idp.test")
    with pytest.raises(ConfigError, match="not a valid URL"):
        check_issuer_url("https://[x")
    with pytest.raises(ConfigError):
        parse_metadata({"issuer": "http://[x"}, "http://[x")
