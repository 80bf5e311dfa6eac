"""The command line's machine flags: `--client-credentials`, `--exchange SOURCE` and the
settings they need, turned into `OAuthTokenSource` options (see `_machine`).

A profile may keep the same choice as its `machine` table (`oauth-auth login --profile
NAME --client-credentials ...` saves it after a first token proves it works); flags given
on the command line win over it. No secret is ever taken from argv or written to the
config file: the client secret comes from the environment variable `--client-secret-env`
names (kept by name in the profile), the private key from the file
`--assertion-key-file` names (kept by path).
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Mapping
from typing import Any

from ._machine import SUBJECT_FORMS, MachineSpec
from .errors import ConfigError

__all__ = ["MACHINE_FIELD", "add_machine_flags", "machine_options", "machine_spec"]

#: The config entry's field that holds a profile's `MachineSpec` table.
MACHINE_FIELD = "machine"


def add_machine_flags(parser: argparse.ArgumentParser) -> None:
    """The machine flags of `token` and `login`."""
    group = parser.add_argument_group(
        "machines (no person: a grant instead of a login; secrets never on the command line)")
    how = group.add_mutually_exclusive_group()
    how.add_argument("--client-credentials", action="store_true",
                     help="the client credentials grant (the client's secret or key)")
    how.add_argument("--exchange", metavar="SOURCE",
                     help=f"trade a subject token for an access token (RFC 8693): {SUBJECT_FORMS}")
    group.add_argument("--subject-audience", metavar="AUD",
                       help="the audience of GitHub Actions' token (default: the issuer)")
    group.add_argument("--assertion-key-file", metavar="FILE",
                       help="authenticate with a JWT signed by this private key (PEM or JWK"
                       " file; private_key_jwt) instead of a client secret")
    with contextlib.suppress(argparse.ArgumentError):  # login has it already
        group.add_argument("--client-secret-env", metavar="VAR",
                           help="the environment variable that holds the client secret")


def machine_spec(args: argparse.Namespace, entry: Mapping[str, Any] | None) -> MachineSpec | None:
    """The machine the flags and the profile's entry name (flags win); None: a person."""
    saved = (entry or {}).get(MACHINE_FIELD)
    base = MachineSpec.from_config(saved) if saved is not None else None
    grant = ("client_credentials" if getattr(args, "client_credentials", False)
             else "exchange" if getattr(args, "exchange", None) else "")
    if not grant and base is None:
        return None
    subject = getattr(args, "exchange", None) or ""
    if not grant and base is not None:
        grant, subject = base.grant, base.subject
    elif base is not None and grant != base.grant:
        base = None  # another grant than the saved one: start from nothing
    keep = base.to_config() if base is not None else {}

    def pick(flag: str) -> str:
        return str(getattr(args, flag, None) or keep.get(flag, ""))

    return MachineSpec(
        grant=grant,
        subject=subject if grant == "exchange" else "",
        subject_audience=pick("subject_audience"),
        client_secret_env=pick("client_secret_env"),
        assertion_key_file=pick("assertion_key_file"),
    )


def machine_options(
    spec: MachineSpec, issuer: str, scopes: list[str] | tuple[str, ...] = ()
) -> dict[str, Any]:
    """`open_session` options for a machine: its grant, and its client secret when the
    spec names where it is (None otherwise: the stored one, if any, stands)."""
    if not issuer:
        raise ConfigError("a machine needs the issuer", hint="give --issuer URL")
    options: dict[str, Any] = {"grant": spec.build(issuer, scopes), "interactive": False}
    secret = spec.client_secret()
    if secret:
        options["client_secret"] = secret
    return options
