"""Test bench: the real OpenID provider, the real Secret Service, browser helpers."""
