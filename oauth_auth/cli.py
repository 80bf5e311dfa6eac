"""The `oauth-auth` command: log in once, then print tokens for scripts and tools.

    oauth-auth login  --issuer URL --client-id ID      # browser (or --device) login
    oauth-auth token  --issuer URL --client-id ID      # the access token on stdout
    oauth-auth status --issuer URL --client-id ID      # what is stored, never a secret
    oauth-auth logout --issuer URL --client-id ID      # revoke and delete
    oauth-auth login --profile work --issuer URL --client-id ID   # saves profile "work"
    oauth-auth token --profile work
    oauth-auth registry login|token|logout|status --registry URL [...]
    oauth-auth llm login|token|logout|status --gateway URL [...]

stdout carries only data (the token, the status); every human message goes to stderr.
Exit codes: 0 ok, 4 login required (nothing usable stored, or the session ended), 1 any
other failure, 2 bad usage. An error is one line, ``oauth-auth: error: <what>; <hint>``,
with a traceback only under ``--debug``.

`token` must be fast on a cache hit: this module imports argparse and the standard
library only; the token path loads the token source and the secrets provider, never
requests, httpx, authlib or joserfc (those load only when a refresh or login happens).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from . import __version__
from .errors import InvalidGrantError, LoginRequiredError, OAuthAuthError

if TYPE_CHECKING:
    import logging

    from .profiles import ProfileKind, Session
    from .secrets import KeyringSecrets

__all__ = ["EXIT_FAILURE", "EXIT_LOGIN_REQUIRED", "EXIT_OK", "EXIT_USAGE", "main"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_LOGIN_REQUIRED = 4

PROG = "oauth-auth"

#: Extra keyword arguments for every session the command opens. Tests put a
#: ``secrets_provider`` (MemorySecrets), a ``transport`` (a fake provider) or an
#: ``open_browser`` here; nothing else sets it.
_session_options: dict[str, Any] = {}


class _UsageError(Exception):
    """Bad usage found after parsing (exit 2, with the command's usage)."""


# ------------------------------------------------------------------------------ parser

_EPILOG_TOP = """\
examples:
  oauth-auth login --issuer https://auth.example.com --client-id my-cli
  oauth-auth token --issuer https://auth.example.com --client-id my-cli
  curl -H "Authorization: Bearer $(oauth-auth token --profile work)" https://api.example.com
  oauth-auth registry login --registry https://registry.example.com \\
      --issuer https://auth.example.com --client-id registry-cli
  oauth-auth llm token --gateway https://llm.example.com

exit codes: 0 ok, 4 login required, 1 other failure, 2 bad usage.
environment: OAUTH_AUTH_CONFIG (config file), PYTHON_KEYRING_BACKEND (keyring backend).
"""

_ABOUT = {
    "login": """\
Logs in interactively (browser with PKCE, or the device grant with --device) and stores
the session in the keyring{saves}.
It always runs a new login, even when a session is stored.
""",
    "token": """\
Prints a valid access token alone on stdout (refreshing it when needed). Never
interactive: exits 4 with the login command on stderr when a login is needed. Fit to be a
credential helper (apiKeyHelper, $(oauth-auth ... token ...)).
""",
    "logout": """\
Revokes the refresh token at the provider (RFC 7009) when it advertises a revocation
endpoint, then deletes the stored tokens and the config's cached reference. A failed
revocation still deletes locally (and says so). Nothing stored is a success.
""",
    "status": """\
Shows the session's settings and which tiers hold something, with expiries; never a
secret. Exits 0 when a token can be had without logging in, 4 when not.
""",
}

_SAVES = {
    "adhoc": "; with --profile NAME the settings are saved as that profile",
    "registry": "; the settings are saved for the registry in the config file",
    "llm": "; the settings are saved for the gateway in the config file",
}

_TARGETS = {
    # kind: (what the first login names, what later commands name)
    "adhoc": ("--profile work", "--profile work"),
    "registry": ("--registry https://registry.example.com",
                 "--registry https://registry.example.com"),
    "llm": ("--gateway https://llm.example.com", "--gateway https://llm.example.com"),
}


def _epilog(kind: str, command: str) -> str:
    """The help epilog of one command: what it does, then examples."""
    group = "" if kind == "adhoc" else f" {kind}"
    cmd = f"oauth-auth{group} {command}"
    target = _TARGETS[kind][1]
    settings = "--issuer https://auth.example.com --client-id my-cli"
    if command == "login":
        examples = [f"{cmd} {target} {settings}", f"{cmd} {target} --no-browser"
                    "  # print the URL, don't open a browser",
                    f"{cmd} {target} --device      # a code to enter on any device"]
        if kind == "adhoc":
            examples.insert(0, f"{cmd} {settings}  # ad hoc, nothing saved")
    elif command == "token":
        examples = [f"{cmd} {target}",
                    f'curl -H "Authorization: Bearer $({cmd} {target})" https://api.example.com',
                    f"TOKEN=$({cmd} {target}) || exit"]
        if kind == "adhoc":
            examples.insert(1, f"{cmd} {settings}")
    elif command == "status":
        examples = [f"{cmd} {target}", f"{cmd} {target} --json"]
    else:
        examples = [f"{cmd} {target}"]
    about = _ABOUT[command].format(saves=_SAVES[kind] if command == "login" else "")
    return about + "\nexamples:\n" + "".join(f"  {e}\n" for e in examples)


def _common(parser: argparse.ArgumentParser, command: str) -> None:
    group = parser.add_argument_group("OAuth settings (override the saved ones)")
    group.add_argument("--issuer", metavar="URL", help="the OpenID provider's issuer URL")
    group.add_argument("--client-id", metavar="ID", help="the client id registered there")
    group.add_argument("--scope", metavar="SCOPE", action="append", dest="scopes",
                       help="a scope to request (repeatable; openid and offline_access are"
                       " always added)")
    group.add_argument("--audience", metavar="RESOURCE",
                       help="resource indicator (RFC 8707) sent with every token request")
    group.add_argument("--callback-port", metavar="PORT", type=_port,
                       help="loopback port of the login redirect URI (default 8666)")
    login = parser.add_argument_group("login")
    how = login.add_mutually_exclusive_group()
    how.add_argument("--no-browser", action="store_true",
                     help="don't open a browser: print the login URL to stderr")
    how.add_argument("--device", action="store_true",
                     help="log in with the device grant (a code to enter on any device)")
    other = parser.add_argument_group("other")
    other.add_argument("--config", metavar="FILE",
                       help="config file (default: $OAUTH_AUTH_CONFIG or the user config"
                       " directory)")
    if command == "status":
        other.add_argument("--json", action="store_true", help="print the status as JSON")
    other.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="log what happens and show tracebacks")


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port (0-65535)")
    return value


def _leaf(subparsers: Any, command: str, *, kind: str, stub: bool = False) -> None:
    helps = {
        "login": "log in and store the session",
        "token": "print an access token on stdout",
        "logout": "revoke and delete the stored session",
        "status": "show what is stored (never a secret)",
    }
    if stub:  # not the command being run: only its line in the parent's help
        subparsers.add_parser(command, help=helps[command])
        return
    epilog = _epilog(kind, command)
    parser: argparse.ArgumentParser = subparsers.add_parser(
        command, help=helps[command], description=helps[command].capitalize() + ".",
        epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(command=command, kind=kind)
    if kind == "adhoc":
        parser.add_argument("--profile", metavar="NAME",
                            help="a profile saved in the config file (login saves it)")
    elif kind == "registry":
        parser.add_argument("--registry", metavar="URL", required=True,
                            help="the registry's URL")
    else:
        parser.add_argument("--gateway", metavar="URL", required=True,
                            help="the LLM gateway's URL")
    _common(parser, command)


_COMMANDS = ("login", "token", "logout", "status")
_GROUPS = ("registry", "llm")


def _selected(argv: Sequence[str] | None) -> tuple[str, str] | None:
    """(kind, command) that `argv` names, or None when that is not plain to see.

    Building all fifteen parsers costs more than the rest of a cached `token` run, so
    `build_parser` fully builds only the selected one (the others get their help line).
    """
    words = [w for w in (sys.argv[1:] if argv is None else argv) if not w.startswith("-")]
    if not words:
        return None
    if words[0] in _COMMANDS:
        return "adhoc", words[0]
    if words[0] in _GROUPS and len(words) > 1 and words[1] in _COMMANDS:
        return words[0], words[1]
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The argparse parser of the command; with `argv`, only the leaf it names is built in
    full (every leaf when `argv` names none, e.g. for `--help`)."""
    only = _selected(argv) if argv is not None else None
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="OIDC-backed bearer tokens: log in once, then every call just works.",
        epilog=_EPILOG_TOP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="log what happens and show tracebacks")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for command in _COMMANDS:
        _leaf(commands, command, kind="adhoc", stub=only is not None and only != ("adhoc", command))
    for kind, what in (("registry", "a registry (--registry URL)"),
                       ("llm", "an LLM gateway (--gateway URL)")):
        if only is not None and only[0] != kind:
            commands.add_parser(kind, help=f"sessions for {what}")
            continue
        group = commands.add_parser(
            kind, help=f"sessions for {what}",
            description=f"Log in to, get tokens for, and log out of {what}.",
            epilog=_EPILOG_TOP, formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        group.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                           help="log what happens and show tracebacks")
        group.set_defaults(group=group)
        leaves = group.add_subparsers(title="commands", metavar="COMMAND")
        for command in _COMMANDS:
            _leaf(leaves, command, kind=kind, stub=only is not None and only != (kind, command))
    return parser


# ------------------------------------------------------------------------------ main


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return its exit code (0, 1, 2 or 4)."""
    parser = build_parser(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return _code(exc.code)
    if not hasattr(args, "command"):
        target = getattr(args, "group", None) or parser
        target.print_usage(sys.stderr)
        print(f"{target.prog}: error: a command is required", file=sys.stderr)
        return EXIT_USAGE
    debug = bool(getattr(args, "debug", False))
    handler = _start_logging(debug)
    session: Session | None = None
    holder: list[Session] = []
    try:
        try:
            return _run(args, holder)
        finally:
            session = holder[0] if holder else None
            if session is not None:
                _warn_plaintext(session)
                session.source.close()
    except _UsageError as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        # The contract's exit codes are 0, 4, 1 and 2 for every command: an interrupted
        # command failed (not the shell's 130), and the login port is already released.
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_FAILURE
    except OAuthAuthError as exc:
        if debug:
            import traceback

            traceback.print_exc()
        code = _exit_code(exc)
        hint = exc.hint
        if code == EXIT_LOGIN_REQUIRED and session is not None:
            hint = f"run: {session.login_command}"
        _error(exc.message or type(exc).__name__, hint)
        return code
    except Exception as exc:  # noqa: BLE001 - the command's last line of defence
        if debug:
            import traceback

            traceback.print_exc()
        _error(f"unexpected {type(exc).__name__}: {_first_line(exc)}",
               "" if debug else "run with --debug for details")
        return EXIT_FAILURE
    finally:
        _stop_logging(handler)


def _code(code: object) -> int:
    if code is None:
        return EXIT_OK
    if isinstance(code, int):
        return code
    return EXIT_USAGE


def _exit_code(exc: BaseException) -> int:
    if isinstance(exc, (LoginRequiredError, InvalidGrantError)):
        return EXIT_LOGIN_REQUIRED
    return EXIT_FAILURE


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else ""


def _error(message: str, hint: str = "") -> None:
    line = " ".join(message.split())
    if hint and hint not in line:
        line += f"; {' '.join(hint.split())}"
    print(f"{PROG}: error: {line}", file=sys.stderr)


def _say(text: str) -> None:
    print(text, file=sys.stderr)


def _start_logging(debug: bool) -> logging.Handler:
    """Show the library's warnings (all its logs with --debug) on stderr, one line each."""
    import logging

    class _Format(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return f"{PROG}: {record.levelname.lower()}: {record.getMessage()}"

    def _not_reported_by_us(record: logging.LogRecord) -> bool:
        # `logout` reports a failed revocation itself, once; every command warns about a
        # plaintext keyring backend itself, once, in its own words.
        message = record.getMessage()
        return debug or not (message.startswith("revoking the refresh token failed")
                             or (message.startswith("the keyring backend")
                                 and "unencrypted" in message))

    logger = logging.getLogger("oauth_auth")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Format())
    handler.setLevel(logging.DEBUG if debug else logging.WARNING)
    handler.addFilter(_not_reported_by_us)
    handler._oauth_auth_saved_level = logger.level  # type: ignore[attr-defined]
    if debug and not logger.isEnabledFor(logging.DEBUG):
        logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    return handler


def _stop_logging(handler: logging.Handler) -> None:
    import logging

    logger = logging.getLogger("oauth_auth")
    logger.removeHandler(handler)
    logger.setLevel(handler._oauth_auth_saved_level)  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------ commands


def _kind(args: argparse.Namespace) -> tuple[ProfileKind, str | None]:
    from .profiles import ADHOC, LLM, PROFILE, REGISTRY

    if args.kind == "registry":
        return REGISTRY, args.registry
    if args.kind == "llm":
        return LLM, args.gateway
    if args.profile:
        return PROFILE, args.profile
    return ADHOC, None


def _open(args: argparse.Namespace, holder: list[Session], **options: Any) -> Session:
    from ._keys import normalize_scopes
    from .profiles import ADHOC, open_session

    kind, name = _kind(args)
    if kind is ADHOC and not (args.issuer and args.client_id):
        missing = " and ".join(f for f, v in (("--issuer", args.issuer),
                                               ("--client-id", args.client_id)) if not v)
        raise _UsageError(f"give --profile NAME, or --issuer and --client-id ({missing} missing)")
    scopes = None
    if args.scopes is not None:
        scopes = normalize_scopes(args.scopes)
    merged = {**options, **_session_options}
    session = open_session(
        kind, name, issuer=args.issuer, client_id=args.client_id, scopes=scopes,
        audience=args.audience, callback_port=args.callback_port,
        config_path=args.config, **merged,
    )
    holder.append(session)
    return session


def _run(args: argparse.Namespace, holder: list[Session]) -> int:
    command = args.command
    if command == "token":
        return _token(_open(args, holder, interactive=False))
    if command == "login":
        try:
            session = _open(
                args, holder, interactive=True, fresh_login=True,
                skip_browser=bool(args.no_browser),
                login_method="device" if args.device else "auto",
            )
        except LoginRequiredError as exc:  # a profile or registry without settings
            raise _UsageError(f"{exc.message}; {exc.hint}") from None
        return _login(session)
    if command == "logout":
        return _logout(_open(args, holder, interactive=False))
    return _status(_open(args, holder, interactive=False), as_json=bool(args.json))


def _token(session: Session) -> int:
    token = session.source.token()
    sys.stdout.write(token + "\n")
    sys.stdout.flush()
    return EXIT_OK


def _login(session: Session) -> int:
    source = session.source
    source.token()
    session.save_settings()
    from ._token import format_rfc3339

    held = source.status(read_store=False)
    expiry = held.memory_expiry
    until = (f", access token valid until {format_rfc3339(expiry.timestamp())}" if expiry
             else ", access token valid until none" if held.memory_token else "")
    target = f" for the {session.kind.describe} {session.name}" if session.name else ""
    _say(f"Logged in to {session.oidc.issuer} as client {session.oidc.client_id}{target}"
         f"{until}.")
    if held.memory_refresh_token:
        _say(f"The session is stored in {_store_name(session)} (key {session.key}).")
    return EXIT_OK


def _logout(session: Session) -> int:
    result = session.source.logout_result()
    session.forget()
    target = (f"the {session.kind.describe} {session.name}" if session.name
              else f"client {session.oidc.client_id} at {session.oidc.issuer}")
    if not result.had_refresh_token:
        _say(f"Logged out of {target}: no session was stored (nothing to revoke).")
    elif result.revoked:
        _say(f"Logged out of {target}: the refresh token was revoked at the provider and"
             " the stored tokens deleted.")
    else:
        _say(f"Logged out of {target}: the stored tokens were deleted, but the refresh"
             f" token was not revoked at the provider ({result.revocation_error}).")
    return EXIT_OK


# ------------------------------------------------------------------------------ status


def _keyring_of(store: object) -> KeyringSecrets | None:
    from .secrets import KeyringSecrets

    return store if isinstance(store, KeyringSecrets) else None


def _store_name(session: Session) -> str:
    store = session.store
    if store is None:
        return "nothing (no secrets provider)"
    keyring = _keyring_of(store)
    if keyring is not None:
        try:
            name = f"the keyring ({keyring.backend_name})"
        except OAuthAuthError as exc:
            name = f"the keyring (unavailable: {exc.message})"
    else:
        name = type(store).__name__
    if session.kind.env_first:
        from ._keys import ENV_SECRET_PREFIX

        name = f"the environment ({ENV_SECRET_PREFIX}*), then {name}"
    return name


def _warn_plaintext(session: Session) -> None:
    keyring = _keyring_of(session.store)
    if keyring is None or not keyring.loaded:
        return  # never used: nothing was read or written through it
    try:
        plaintext = keyring.is_plaintext
        name = keyring.backend_name
    except OAuthAuthError:
        return
    if plaintext:
        _say(f"{PROG}: warning: the keyring backend {name} keeps secrets unencrypted on disk"
             " (it was chosen by PYTHON_KEYRING_BACKEND or keyringrc.cfg)")


def _status(session: Session, *, as_json: bool) -> int:
    import time

    from ._token import format_rfc3339

    now = time.time()
    view = session.source.status()
    errors: list[OAuthAuthError] = list(view.errors)
    at_present, at_fresh = view.shared_token, view.shared_fresh
    rt_present = view.stored_refresh_token
    at_expiry = view.shared_expiry.timestamp() if view.shared_expiry is not None else None
    at_source = _at_origin(session) if at_present else ""
    usable = at_fresh or bool(rt_present)
    keyring = _keyring_of(session.store)
    plaintext = False
    if keyring is not None and keyring.loaded:
        try:
            plaintext = bool(keyring.is_plaintext)
        except OAuthAuthError:
            plaintext = False
    entry = session.entry or {}
    profile = {
        "registry": f"registry {session.name}",
        "llm": f"LLM gateway {session.name}",
        "profile": f"profile {session.name}",
    }.get(session.kind.name, "ad hoc (command-line flags)")
    info: dict[str, Any] = {
        "profile": profile,
        "kind": session.kind.name,
        "name": session.name,
        "issuer": session.oidc.issuer,
        "client_id": session.oidc.client_id,
        "audience": session.oidc.audience,
        "scopes": list(session.oidc.scopes),
        "config_file": str(session.config.path),
        "config_entry": session.entry is not None,
        "key": session.key,
        "secrets_backend": _store_name(session),
        "plaintext": plaintext,
        "access_token": {
            "present": at_present,
            "expiry": format_rfc3339(at_expiry) if at_expiry is not None else None,
            "usable": at_fresh,
            "source": at_source or None,
        },
        "refresh_token": {"present": rt_present},
        "cached_token_expiry": entry.get("cached_token_expiry"),
        "usable": usable,
        "errors": list(dict.fromkeys(e.message for e in errors)),
    }
    if as_json:
        import json

        print(json.dumps(info, indent=2))
    else:
        _print_status(info, now)
    if usable:
        return EXIT_OK
    if errors:
        raise errors[0]
    _say(f"Not logged in; run: {session.login_command}")
    return EXIT_LOGIN_REQUIRED


def _at_origin(session: Session) -> str:
    """Where the access token came from, for the LLM profile's environment injection."""
    if not session.kind.env_first:
        return "store"
    from ._keys import env_access_token_var

    variable = env_access_token_var(session.key, session.kind.scope)
    return f"environment variable {variable}" if os.environ.get(variable) else "store"


def _print_status(info: dict[str, Any], now: float) -> None:
    at = info["access_token"]
    if not at["present"]:
        at_text = "none"
    else:
        from datetime import datetime

        expiry = at["expiry"]
        left = 0.0
        if expiry is not None:
            left = datetime.fromisoformat(expiry.replace("Z", "+00:00")).timestamp() - now
        state = (f"valid until {expiry} ({_duration(left)} left)" if left > 0
                 else f"expired at {expiry}")
        if left > 0 and not at["usable"]:
            state += ", too close to expiry to be served"
        where = at["source"]
        at_text = f"cached, {state}" + (f" [{where}]" if where and where != "store" else "")
    rt = info["refresh_token"]["present"]
    rt_text = {True: "stored", False: "none", None: "unknown (the store failed)"}[rt]
    rows = [
        ("profile", info["profile"]),
        ("issuer", info["issuer"]),
        ("client id", info["client_id"]),
    ]
    if info["audience"]:
        rows.append(("audience", info["audience"]))
    rows += [
        ("scopes", " ".join(info["scopes"])),
        ("config file", info["config_file"] + ("" if info["config_entry"] or
                                               info["kind"] == "adhoc" else " (no entry)")),
        ("secrets key", info["key"]),
        ("secrets", info["secrets_backend"]
         + (" WARNING: plaintext on disk" if info["plaintext"] else "")),
        ("access token", at_text),
        ("refresh token", rt_text),
        ("usable", "yes" if info["usable"] else "no (login required)"),
    ]
    for error in info["errors"]:
        rows.append(("error", error))
    width = max(len(name) for name, _ in rows) + 1
    for name, value in rows:
        print(f"{name + ':':<{width}} {value}")


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
