"""The `oauth-auth` command: log in once, then print tokens for scripts and tools.

    oauth-auth login  --issuer URL --client-id ID      # browser (or --device) login
    oauth-auth token  --issuer URL --client-id ID      # the access token on stdout
    oauth-auth status --issuer URL --client-id ID      # who, what is stored, never a secret
    oauth-auth logout --issuer URL --client-id ID      # revoke and delete
    oauth-auth login --profile work --issuer URL --client-id ID   # saves profile "work"
    oauth-auth token --profile work                   # or OAUTH_AUTH_PROFILE=work
    oauth-auth profiles                               # every profile, registry, gateway
    oauth-auth completion bash|zsh|fish
    oauth-auth registry login|token|logout|status --registry URL [...]
    oauth-auth llm login|token|logout|status --gateway URL [...]

stdout carries only data (the token, the status); every human message goes to stderr.
Exit codes: 0 ok, 4 login required (nothing usable stored, or the session ended), 1 any
other failure, 2 bad usage. An error is one line, ``oauth-auth: error: <what>; <hint>``,
with a traceback only under ``--debug``.

`token` must be fast on a cache hit: `main` first tries `_cli_fast`, which reads the
shared access-token entry with the standard library and the Secret Service's own client
only; anything it cannot answer exactly as the full path would comes here. This module
imports the standard library only at first; the token source, the secrets providers and
the HTTP stack load only when a command needs them.

One place builds a session from the arguments (`_open`): a new option that selects how
the token source is made (a resource URL, a machine grant) is added there, and to the
parser's `_settings` group, and every command gets it.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from . import __version__
from .errors import (
    InvalidGrantError,
    LockTimeoutError,
    LoginError,
    LoginRequiredError,
    OAuthAuthError,
    SecretsError,
)

if TYPE_CHECKING:
    import argparse
    import logging

    from .profiles import ProfileKind, Session
    from .secrets import KeyringSecrets

__all__ = ["EXIT_FAILURE", "EXIT_LOGIN_REQUIRED", "EXIT_OK", "EXIT_USAGE", "main"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_LOGIN_REQUIRED = 4

PROG = "oauth-auth"
#: Names the profile used when neither --profile nor --issuer is given.
PROFILE_ENV = "OAUTH_AUTH_PROFILE"
#: Seconds `token` waits for another process's refresh or login by default.
DEFAULT_WAIT = 30.0
#: The config entry's field that says who is logged in (the ID token's sub, email and
#: name; not a secret, and never the token): written after a login or a refresh.
IDENTITY_FIELD = "identity"

#: Extra keyword arguments for every session the command opens. Tests put a
#: ``secrets_provider`` (MemorySecrets), a ``transport`` (a fake provider) or an
#: ``open_browser`` here; nothing else sets it. While it is set the cache-hit fast path
#: is off (it would not see them).
_session_options: dict[str, Any] = {}


class _UsageError(Exception):
    """Bad usage found after parsing (exit 2, with the command's usage)."""


# ------------------------------------------------------------------------------ parser

_EPILOG_TOP = """\
examples:
  oauth-auth login --profile work --issuer https://auth.example.com --client-id my-cli
  oauth-auth token --profile work
  oauth-auth token --profile work | sed 's/.*/header = "Authorization: Bearer &"/' \\
      | curl -sS -K - https://api.example.com   # the token on curl's stdin, not argv
  oauth-auth status --profile work --check
  oauth-auth profiles
  oauth-auth registry login --registry https://registry.example.com \\
      --issuer https://auth.example.com --client-id registry-cli
  oauth-auth llm token --gateway https://llm.example.com

exit codes: 0 ok, 4 login required, 1 other failure, 2 bad usage.
environment: OAUTH_AUTH_PROFILE (default profile), OAUTH_AUTH_CONFIG (config file),
  OAUTH_AUTH_STORE (a fleet store URL), PYTHON_KEYRING_BACKEND (keyring backend).
"""

_ABOUT = {
    "login": """\
Logs in interactively (browser with PKCE, the device grant with --device, or --paste over
SSH) and stores the session in the secrets store{saves}. The store is checked before the
browser opens, and the command exits 0 only when the session was stored.
It always runs a new login, even when a session is stored.
""",
    "token": """\
Prints a valid access token alone on stdout (refreshing it when needed). Never
interactive: exits 4 with the login command on stderr when a login is needed, and after
--wait seconds (default 30) when another process's login is still waiting for its user.
Fit to be a credential helper (apiKeyHelper, kubectl exec, git). Keep the token off other
commands' argv (every local user can read it there): feed it to curl on stdin.
""",
    "logout": """\
Revokes the refresh token at the provider (RFC 7009) when it advertises a revocation
endpoint, then deletes the stored tokens and the config's cached reference. A failed
revocation still deletes locally (and says so). Nothing stored is a success; the
profile's settings (and its client secret) stay.
""",
    "status": """\
Shows who is logged in, the session's settings and which tiers hold something, with
expiries; never a secret. --check asks the provider (a refresh) whether the session still
works. Exits 0 when a token can be had without logging in, 4 when a login is needed, 1
when that cannot be told (the secrets store failed). --json prints JSON in every case.
""",
}

_SAVES = {
    "adhoc": "; with --profile NAME the settings are saved as that profile",
    "registry": "; the settings are saved for the registry in the config file",
    "llm": "; the settings are saved for the gateway in the config file",
}

_TARGETS = {
    "adhoc": "--profile work",
    "registry": "--registry https://registry.example.com",
    "llm": "--gateway https://llm.example.com",
}

_HELPS = {
    "login": "log in and store the session",
    "token": "print an access token on stdout",
    "logout": "revoke and delete the stored session",
    "status": "show who is logged in and what is stored (never a secret)",
}

_CURL = "curl -sS -K - https://api.example.com"


def _epilog(kind: str, command: str) -> str:
    """The help epilog of one command: what it does, then examples."""
    group = "" if kind == "adhoc" else f" {kind}"
    cmd = f"oauth-auth{group} {command}"
    target = _TARGETS[kind]
    settings = "--issuer https://auth.example.com --client-id my-cli"
    if command == "login":
        examples = [f"{cmd} {target} {settings}",
                    f"{cmd} {target} --no-browser  # print the URL, don't open a browser",
                    f"{cmd} {target} --device      # a code to enter on any device",
                    f"{cmd} {target} --paste       # over SSH: paste the final URL back",
                    f"MY_SECRET=... {cmd} {target} {settings} --client-secret-env MY_SECRET"]
        if kind == "adhoc":
            examples.insert(0, f"{cmd} {settings}  # ad hoc, nothing saved")
            examples.append(f"{cmd} --resource https://mcp.example.com/mcp  # finds the"
                            " rest (RFC 9728)")
    elif command == "token":
        examples = [f"{cmd} {target}",
                    # the header travels on curl's stdin, never on its argv
                    f"{cmd} {target} | sed 's/.*/header = \"Authorization: Bearer &\"/'"
                    f" | {_CURL}",
                    f"{cmd} {target} --json        # with its expiry",
                    f"{cmd} {target} --min-valid 300",
                    f"TOKEN=$({cmd} {target}) || exit"]
        if kind == "adhoc":
            examples.insert(1, f"{cmd} {settings}")
    elif command == "status":
        examples = [f"{cmd} {target}", f"{cmd} {target} --json",
                    f"{cmd} {target} --check       # ask the provider"]
    else:
        examples = [f"{cmd} {target}"]
    about = _ABOUT[command].format(saves=_SAVES[kind] if command == "login" else "")
    return about + "\nexamples:\n" + "".join(f"  {e}\n" for e in examples)


def _settings(parser: argparse.ArgumentParser) -> None:
    """The session-selecting settings every command of a session takes."""
    group = parser.add_argument_group("OAuth settings (override the saved ones)")
    group.add_argument("--issuer", metavar="URL", help="the OpenID provider's issuer URL")
    group.add_argument("--client-id", metavar="ID", help="the client id registered there")
    group.add_argument("--scope", metavar="SCOPE", action="append", dest="scopes",
                       help="a scope to request (repeatable; openid and offline_access are"
                       " added as the provider allows)")
    group.add_argument("--audience", metavar="RESOURCE",
                       help="the API the token is for (sent as --audience-param says)")


def _login_options(parser: argparse.ArgumentParser) -> None:
    import argparse

    login = parser.add_argument_group("login")
    login.add_argument("--callback-port", metavar="PORT", type=_port,
                       help="loopback port of the login redirect URI (default 8666)")
    login.add_argument("--callback-host", choices=("localhost", "127.0.0.1", "::1"),
                       help="host of the redirect URI (default localhost)")
    login.add_argument("--timeout", metavar="SECONDS", type=_seconds, default=300.0,
                       help="how long the login may take (default 300)")
    how = login.add_mutually_exclusive_group()
    how.add_argument("--no-browser", action="store_true",
                     help="don't open a browser: print the login URL to stderr")
    how.add_argument("--device", action="store_true",
                     help="log in with the device grant (a code to enter on any device)")
    how.add_argument("--paste", action="store_true",
                     help="print the login URL, then read the URL the browser ends on"
                     " (for SSH without port forwarding)")
    provider = parser.add_argument_group("provider (saved in the profile)")
    provider.add_argument("--preset", metavar="NAME",
                          help="provider rules: generic, google, entra, auth0, okta,"
                          " keycloak, cognito, gitlab, github, dex (default: by issuer)")
    secret = provider.add_mutually_exclusive_group()
    secret.add_argument("--client-secret-env", metavar="VAR",
                        help="read the client secret from environment variable VAR")
    secret.add_argument("--client-secret-stdin", action="store_true",
                        help="read the client secret from the first line of stdin")
    provider.add_argument("--offline-access", action=argparse.BooleanOptionalAction,
                          default=None,
                          help="ask for the offline_access scope (default: when the"
                          " provider lists it)")
    provider.add_argument("--prompt", metavar="VALUE",
                          help="the prompt parameter ('' sends none; default: consent"
                          " with offline_access)")
    provider.add_argument("--audience-param", choices=("resource", "audience", ""),
                          help="how --audience travels: resource (RFC 8707), audience"
                          " (Auth0), '' (not sent)")
    provider.add_argument("--auth-param", metavar="KEY=VALUE", action="append",
                          type=_pair, dest="auth_params",
                          help="an extra authorization request parameter (repeatable)")
    provider.add_argument("--endpoint", metavar="NAME=URL", action="append", type=_pair,
                          dest="endpoints",
                          help="set a provider endpoint, e.g."
                          " token_endpoint=https://... (repeatable)")


def _target(parser: argparse.ArgumentParser, kind: str) -> None:
    if kind == "adhoc":
        which = parser.add_mutually_exclusive_group()
        which.add_argument("--profile", metavar="NAME",
                           help=f"a profile saved in the config file (login saves it;"
                           f" default ${PROFILE_ENV})")
        which.add_argument("--resource", metavar="URL",
                           help="a resource that says where to log in (RFC 9728, MCP):"
                           " its authorization server and client are found and kept")
    elif kind == "registry":
        parser.add_argument("--registry", metavar="URL", required=True,
                            help="the registry's URL")
    else:
        parser.add_argument("--gateway", metavar="URL", required=True,
                            help="the LLM gateway's URL")


def _other(parser: argparse.ArgumentParser, *, config: bool = True) -> None:
    import argparse

    other = parser.add_argument_group("other")
    if config:
        other.add_argument("--config", metavar="FILE",
                           help="config file (default: $OAUTH_AUTH_CONFIG or the user"
                           " config directory)")
    other.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="log what happens and show tracebacks")


def _port(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port (0-65535)")
    return value


def _seconds(text: str) -> float:
    import argparse
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (>= 0)")
    return value


def _pair(text: str) -> tuple[str, str]:
    import argparse

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key.strip(), value


def _leaf(subparsers: Any, command: str, *, kind: str, stub: bool = False) -> None:
    import argparse

    if stub:  # not the command being run: only its line in the parent's help
        subparsers.add_parser(command, help=_HELPS[command])
        return
    parser: argparse.ArgumentParser = subparsers.add_parser(
        command, help=_HELPS[command], description=_HELPS[command].capitalize() + ".",
        epilog=_epilog(kind, command), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(command=command, kind=kind)
    _target(parser, kind)
    _settings(parser)
    if command == "login":
        _login_options(parser)
    if command in ("login", "token"):
        from ._cli_machines import add_machine_flags

        add_machine_flags(parser)
    if command == "token":
        out = parser.add_argument_group("output")
        what = out.add_mutually_exclusive_group()
        what.add_argument("--json", action="store_true",
                          help='print {"access_token", "token_type", "expires_at"} as JSON')
        what.add_argument("--id-token", action="store_true",
                          help="print the session's ID token instead")
        out.add_argument("--min-valid", metavar="SECONDS", type=_seconds,
                         help="refresh first when less than this remains")
        out.add_argument("--force-refresh", action="store_true",
                         help="always refresh at the provider first")
        out.add_argument("--wait", metavar="SECONDS", type=_seconds, default=DEFAULT_WAIT,
                         help="how long to wait for another process's login (default 30),"
                         " then exit 4")
    elif command == "status":
        out = parser.add_argument_group("output")
        out.add_argument("--json", action="store_true", help="print the status as JSON")
        out.add_argument("--check", action="store_true",
                         help="ask the provider (a refresh) whether the session works")
    _other(parser)


_COMMANDS = ("login", "token", "logout", "status")
_GROUPS = ("registry", "llm")
_TOOLS = ("profiles", "completion")
SHELLS = ("bash", "zsh", "fish")


def _selected(argv: Sequence[str]) -> tuple[str, str] | None:
    """(kind, command) that `argv` names, or None when that is not plain to see.

    Building every parser costs more than the rest of a cached `token` run, so
    `build_parser` fully builds only the selected one (the others get their help line).
    """
    words = [w for w in argv if not w.startswith("-")]
    if not words:
        return None
    if words[0] in _COMMANDS or words[0] in _TOOLS:
        return "adhoc", words[0]
    if words[0] in _GROUPS and len(words) > 1 and words[1] in _COMMANDS:
        return words[0], words[1]
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The argparse parser of the command; with `argv`, only the leaf it names is built in
    full (every leaf when `argv` names none, e.g. for `--help` or completion)."""
    import argparse

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
    if only is None or only == ("adhoc", "profiles"):
        tool = commands.add_parser(
            "profiles", help="list every profile, registry and gateway with its state",
            description="List every configured profile, registry and LLM gateway, with who"
            " is logged in and until when; never a secret.")
        tool.set_defaults(command="profiles", kind="adhoc")
        tool.add_argument("--json", action="store_true", help="print the list as JSON")
        tool.add_argument("--names", action="store_true",
                          help="print the profile names only (for completion)")
        _other(tool)
    else:
        commands.add_parser("profiles", help="list every profile, registry and gateway")
    if only is None or only == ("adhoc", "completion"):
        tool = commands.add_parser(
            "completion", help="print a shell completion script",
            description="Print a completion script for bash, zsh or fish.",
            epilog="examples:\n  source <(oauth-auth completion bash)\n"
            "  oauth-auth completion zsh > ~/.zfunc/_oauth-auth\n"
            "  oauth-auth completion fish > ~/.config/fish/completions/oauth-auth.fish\n",
            formatter_class=argparse.RawDescriptionHelpFormatter)
        tool.set_defaults(command="completion", kind="adhoc")
        tool.add_argument("shell", choices=SHELLS)
        _other(tool, config=False)
    else:
        commands.add_parser("completion", help="print a shell completion script")
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
    words = list(sys.argv[1:] if argv is None else argv)
    if not _session_options:
        from ._cli_fast import cached_token

        served = cached_token(words)
        if served is not None:
            return served
    return _main(words)


def _main(words: list[str]) -> int:
    parser = build_parser(words)
    try:
        args = parser.parse_args(words)
    except SystemExit as exc:  # --help, --version, usage errors
        return _code(exc.code)
    if not hasattr(args, "command"):
        target = getattr(args, "group", None) or parser
        target.print_usage(sys.stderr)
        print(f"{target.prog}: error: a command is required", file=sys.stderr)
        return EXIT_USAGE
    debug = bool(getattr(args, "debug", False))
    handler = _start_logging(debug)
    holder: list[Session] = []
    try:
        try:
            return _run(args, holder)
        finally:
            for session in holder:
                _warn_plaintext(session, args.command)
                session.source.close()
    except _UsageError as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        # The contract's exit codes are 0, 4, 1 and 2 for every command: an interrupted
        # command failed (not the shell's 130), and the login port is already released.
        _say(f"{PROG}: interrupted")
        return EXIT_FAILURE
    except BrokenPipeError:
        return _closed_stdout()
    except OAuthAuthError as exc:
        if debug:
            import traceback

            traceback.print_exc()
        return _report(exc, args, holder[0] if holder else None)
    except Exception as exc:  # noqa: BLE001 - the command's last line of defence
        if debug:
            import traceback

            traceback.print_exc()
        _error(f"unexpected {type(exc).__name__}: {_first_line(exc)}",
               "" if debug else "run with --debug for details")
        return EXIT_FAILURE
    finally:
        _stop_logging(handler)


def _report(exc: OAuthAuthError, args: argparse.Namespace, session: Session | None) -> int:
    """One error line with its hint; the exit code for `exc`."""
    code = _exit_code(exc, args.command)
    hint = exc.hint
    if code == EXIT_LOGIN_REQUIRED and session is not None:
        hint = f"run: {session.login_command}"
    if isinstance(exc, LoginError) and exc.error == "timeout":
        hint = (f"run the login again and finish it within {args.timeout:g} s, or give it"
                " longer with --timeout SECONDS")
    if isinstance(exc, LockTimeoutError) and args.command == "token":
        hint = ("finish that login (or stop that process), or wait longer with --wait"
                " SECONDS")
    _error(exc.message or type(exc).__name__, hint)
    return code


def _code(code: object) -> int:
    if code is None:
        return EXIT_OK
    if isinstance(code, int):
        return code
    return EXIT_USAGE


def _exit_code(exc: BaseException, command: str = "") -> int:
    if isinstance(exc, (LoginRequiredError, InvalidGrantError)):
        return EXIT_LOGIN_REQUIRED
    if isinstance(exc, LockTimeoutError) and command == "token":
        return EXIT_LOGIN_REQUIRED  # another process's login is still waiting (DESIGN)
    return EXIT_FAILURE


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else ""


def _error(message: str, hint: str = "") -> None:
    line = " ".join(message.split())
    if hint and hint not in line:
        line += f"; {' '.join(hint.split())}"
    _say(f"{PROG}: error: {line}")


def _say(text: str) -> None:
    """One human line on stderr (a closed or missing stderr is not an error)."""
    stream = sys.stderr
    if stream is None:
        return
    with contextlib.suppress(OSError, ValueError):
        print(text, file=stream, flush=True)


def _emit(text: str) -> None:
    """Data on stdout, flushed; a closed stdout raises BrokenPipeError for `_main`."""
    stream = sys.stdout
    if stream is None:
        raise BrokenPipeError("stdout is closed")
    try:
        stream.write(text)
        stream.flush()
    except ValueError:  # I/O operation on closed file
        raise BrokenPipeError("stdout is closed") from None


def _closed_stdout() -> int:
    """The reader of stdout went away (`oauth-auth token | head -c0`, a closed pipe):
    nothing more can be delivered, so the command failed, quietly but for one line."""
    try:  # keep the interpreter's exit flush from raising again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno()) if sys.stdout is not None else None
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
    _say(f"{PROG}: error: stdout was closed before the output was written")
    return EXIT_FAILURE


def _start_logging(debug: bool) -> logging.Handler:
    """Show the library's warnings (all its logs with --debug) on stderr, one line each."""
    import logging

    class _Format(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            if record.levelno == logging.INFO:  # progress lines: said as they are
                return f"{PROG}: {record.getMessage()}"
            return f"{PROG}: {record.levelname.lower()}: {record.getMessage()}"

    def _not_reported_by_us(record: logging.LogRecord) -> bool:
        # `logout` reports a failed revocation itself, once; every command warns about a
        # plaintext keyring backend itself, once, in its own words.
        message = record.getMessage()
        if debug:
            return True
        if record.levelno == logging.INFO:
            return bool(getattr(record, "progress", False))
        return not (message.startswith("revoking the refresh token failed")
                    or (message.startswith("the keyring backend")
                        and "unencrypted" in message))

    logger = logging.getLogger("oauth_auth")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Format())
    handler.setLevel(logging.DEBUG if debug else logging.INFO)
    handler.addFilter(_not_reported_by_us)
    handler._oauth_auth_saved_level = logger.level  # type: ignore[attr-defined]
    wanted = logging.DEBUG if debug else logging.INFO
    if not logger.isEnabledFor(wanted):
        logger.setLevel(wanted)
    logger.addHandler(handler)
    return handler


def _stop_logging(handler: logging.Handler) -> None:
    import logging

    logger = logging.getLogger("oauth_auth")
    logger.removeHandler(handler)
    logger.setLevel(handler._oauth_auth_saved_level)  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------ sessions


def _kind(args: argparse.Namespace) -> tuple[ProfileKind, str | None]:
    from .profiles import ADHOC, LLM, PROFILE, REGISTRY, RESOURCE

    if getattr(args, "resource", None):
        return RESOURCE, args.resource
    if args.kind == "registry":
        return REGISTRY, args.registry
    if args.kind == "llm":
        return LLM, args.gateway
    if args.profile:
        return PROFILE, args.profile
    default = os.environ.get(PROFILE_ENV, "").strip()
    if default and not args.issuer:
        return PROFILE, default
    return ADHOC, None


def _open(args: argparse.Namespace, holder: list[Session], *, hide_shared: bool = False,
          secret_needed: bool = True, **options: Any) -> Session:
    """The session the arguments name: the one place a token source is built from them.

    `options` go to `open_session` (and from there to `OAuthTokenSource`). `hide_shared`
    hides the shared access token from the source, so that its `token()` refreshes at
    the provider (`token --force-refresh`, `status --check`). `secret_needed`: the
    command may call the provider, so an ad-hoc client's stored secret is read.
    """
    from ._config import Config
    from .profiles import ADHOC, RESOURCE, default_store, open_session

    kind, name = _kind(args)
    if kind is RESOURCE and args.issuer:
        raise _UsageError("--resource finds its authorization server itself: drop --issuer")
    if kind is ADHOC and not (args.issuer and args.client_id):
        missing = " and ".join(f for f, v in (("--issuer", args.issuer),
                                               ("--client-id", args.client_id)) if not v)
        raise _UsageError(f"give --profile NAME (or set ${PROFILE_ENV}), or --issuer and"
                          f" --client-id ({missing} missing)")
    scopes = None
    if args.scopes is not None:
        from ._keys import normalize_scopes

        scopes = normalize_scopes(args.scopes)
    merged = {**options, **_session_options}
    machine = _machine_spec(args)
    if machine is not None:  # a grant instead of a login (the flags, or the profile's)
        from ._cli_machines import machine_options

        entry_issuer = (_profile_entry(args) or {}).get("issuer") or ""
        merged.update(machine_options(machine, args.issuer or entry_issuer, scopes or ()))
        if machine.assertion_key_file or machine.client_secret_env:
            secret_needed = False  # its credential is named: no stored secret to read
    if hide_shared:
        from ._cli_store import HideSharedToken

        store = merged.get("secrets_provider", _UNSET)
        if store is _UNSET:
            store = default_store(Config(args.config))
        if store is not None:
            merged["secrets_provider"] = HideSharedToken(store)
    if kind is RESOURCE:
        from .resource import resource_session

        if args.audience:
            raise _UsageError("--resource is the audience: drop --audience")
        # Only a login discovers and registers: the other commands need no network
        # call to say that nobody logged in to this resource.
        session = resource_session(
            args.resource, client_id=args.client_id, scopes=scopes, config_path=args.config,
            callback_port=getattr(args, "callback_port", None),
            discover_missing=args.command == "login", **merged,
        )
    else:
        session = open_session(
            kind, name, issuer=args.issuer, client_id=args.client_id, scopes=scopes,
            audience=args.audience, callback_port=getattr(args, "callback_port", None),
            config_path=args.config, read_client_secret=secret_needed and kind is ADHOC,
            **merged,
        )
    holder.append(session)
    return session


def _profile_entry(args: argparse.Namespace) -> dict[str, Any] | None:
    """The config entry of the named profile (None for other kinds and ad-hoc flags)."""
    from ._config import Config
    from .profiles import PROFILE

    kind, name = _kind(args)
    if kind is not PROFILE or not name or kind.section is None:
        return None
    return Config(args.config).entry(kind.section, name)


def _machine_spec(args: argparse.Namespace) -> Any:
    """The machine (`_machine.MachineSpec`) the flags or the profile name, else None."""
    if not hasattr(args, "client_credentials"):  # status, logout: no grant runs
        return None
    from ._cli_machines import machine_spec

    return machine_spec(args, _profile_entry(args))


def _close(session: Session, holder: list[Session]) -> None:
    holder.remove(session)
    session.source.close()


_UNSET: Any = object()


def _run(args: argparse.Namespace, holder: list[Session]) -> int:
    command = args.command
    if command == "completion":
        from ._completion import script

        _emit(script(args.shell, build_parser()))
        return EXIT_OK
    if command == "profiles":
        from ._cli_profiles import list_profiles

        return list_profiles(args.config, as_json=bool(args.json), names=bool(args.names),
                             emit=_emit)
    if command == "token":
        return _token(args, holder)
    if command == "login":
        return _login(args, holder)
    if command == "logout":
        return _logout(args, holder)
    return _status(args, holder)


# ------------------------------------------------------------------------------ token


def _token(args: argparse.Namespace, holder: list[Session]) -> int:
    from ._token import DEFAULT_PREEMPTIVE_WINDOW

    options: dict[str, Any] = {"interactive": False, "lock_timeout": max(args.wait, 0.001)}
    if args.min_valid is not None:
        kind, _ = _kind(args)
        options["preemptive_refresh_window"] = max(
            args.min_valid, kind.window if kind.window is not None else DEFAULT_PREEMPTIVE_WINDOW)
    session = _open(args, holder, hide_shared=bool(args.force_refresh), **options)
    if args.id_token:
        _emit(_id_token(session, args, holder, options) + "\n")
        return EXIT_OK
    source = session.source
    access = source.token()
    _remember_id_token(session)
    if args.json:
        import json

        from ._token import format_rfc3339

        expiry = source.status(read_store=False).memory_expiry
        doc = {"access_token": access, "token_type": "Bearer",
               "expires_at": format_rfc3339(expiry.timestamp()) if expiry else None}
        _emit(json.dumps(doc) + "\n")
    else:
        _emit(access + "\n")
    return EXIT_OK


def _remember_id_token(session: Session) -> None:
    """Note who the ID token of a login or refresh names in the session's config entry
    (ad-hoc flags have none), for `status` and `profiles`. The store keeps only the two
    entries of the contract: the ID token itself is not kept."""
    ident = _identity(session)
    section = session.kind.section
    if not ident or section is None or session.name is None:
        return
    if (session.entry or {}).get(IDENTITY_FIELD) == ident:
        return
    try:
        session.config.set_entry(section, session.name, {IDENTITY_FIELD: ident})
    except OAuthAuthError as exc:
        _say(f"{PROG}: warning: could not note who is logged in ({exc.message})")


def _id_token(session: Session, args: argparse.Namespace, holder: list[Session],
              options: dict[str, Any]) -> str:
    """A new ID token of the session: from a refresh (the ID token is not stored; its
    lifetime is the provider's, often shorter than the session's)."""
    if not args.force_refresh:  # the refresh must reach the provider
        _close(session, holder)
        session = _open(args, holder, hide_shared=True, **options)
    session.source.token()
    fresh = session.source.id_token
    if not fresh:
        raise LoginRequiredError(
            "the provider returned no ID token with the refreshed session",
            hint="ID tokens come with the openid scope; if the provider issues them only"
            " at login, log in again",
        )
    _remember_id_token(session)
    return fresh


# ------------------------------------------------------------------------------ login


def _client_secret(args: argparse.Namespace) -> str | None:
    """The client secret from the environment or stdin, never from argv."""
    if args.client_secret_env:
        value = os.environ.get(args.client_secret_env, "")
        if not value:
            raise _UsageError(f"--client-secret-env: ${args.client_secret_env} is not set"
                              " or empty")
        return value
    if args.client_secret_stdin:
        if sys.stdin is None:
            raise _UsageError("--client-secret-stdin: there is no stdin")
        value = sys.stdin.readline().rstrip("\r\n")
        if not value:
            raise _UsageError("--client-secret-stdin: the first line of stdin is empty")
        return value
    return None


def _provider_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The provider flags the user gave (None: not given, the saved value stands)."""
    settings: dict[str, Any] = {
        "preset": args.preset,
        "offline_access": args.offline_access,
        "prompt": args.prompt,
        "audience_param": args.audience_param,
        "callback_host": args.callback_host,
    }
    if args.auth_params:
        settings["auth_params"] = dict(args.auth_params)
    if args.endpoints:
        settings["endpoints"] = dict(args.endpoints)
    return settings


def _login(args: argparse.Namespace, holder: list[Session]) -> int:
    options: dict[str, Any] = {
        "interactive": True, "fresh_login": True, "skip_browser": bool(args.no_browser),
        "login_method": "device" if args.device else "auto", "login_timeout": args.timeout,
        "provider": _provider_settings(args), "client_secret": _client_secret(args),
        # a wrong client id or redirect URI fails here, not after the whole timeout
        "preflight": True,
    }
    if args.paste:
        from ._cli_paste import paste_options

        options.update(paste_options())
    try:
        session = _open(args, holder, **options)
    except LoginRequiredError as exc:  # a profile or registry without settings
        raise _UsageError(f"{exc.message}; {exc.hint}") from None
    before = _check_store(session)
    session.save_client_secret()
    source = session.source
    source.token()
    _check_stored(session, before)
    session.save_settings()
    machine = _machine_spec(args)
    if machine is not None and session.kind.section is not None and session.name:
        from ._cli_machines import MACHINE_FIELD

        session.config.set_entry(session.kind.section, session.name,
                                 {MACHINE_FIELD: machine.to_config()})
    _remember_id_token(session)
    _say(_logged_in_line(session))
    _say(f"The session is stored in {_store_name(session)} (key {session.key}).")
    return EXIT_OK


def _check_store(session: Session) -> str | None:
    """Fail before the browser opens when the store cannot keep the session: a write and
    a delete of a probe entry. Returns the refresh token stored now (to tell a new one)."""
    secrets = session.secrets
    if secrets is None:
        raise SecretsError("no secrets store is configured, so a login could not be kept",
                           hint="configure a keyring backend (PYTHON_KEYRING_BACKEND)")
    check = getattr(session.store, "check", None)
    if callable(check):
        check()
    probe = session.key + "_LOGIN_CHECK"
    secrets.set_secret(probe, "oauth-auth checks that the store can keep a session")
    secrets.delete_secret(probe)
    return secrets.get_secret(session.key)


def _check_stored(session: Session, before: str | None) -> None:
    """Raise unless the login's session reached the store (exit 0 only then)."""
    if session.secrets is None:  # _check_store refused this already
        return
    held = session.source.status(read_store=False)
    if held.memory_refresh_token:
        now = session.secrets.get_secret(session.key)
        if now and now != before:
            return
    else:
        from ._keys import AT_SUFFIX

        if session.secrets.get_secret(session.key + AT_SUFFIX):
            return
    raise SecretsError(
        f"the login succeeded, but the session could not be stored in {_store_name(session)}"
        " (see the warning above), so the next command would need a login again",
        hint="fix the secrets store (unlock the keyring, or choose a backend with"
        " PYTHON_KEYRING_BACKEND) and log in again",
    )


def _identity(session: Session) -> dict[str, str]:
    """Who the session's token in memory names (from the ID token of a login or
    refresh; empty after a cache hit)."""
    return dict(session.source.status(read_store=False).identity)


def _who(ident: dict[str, str]) -> str:
    from ._cli_store import who

    return who(ident)


def _logged_in_line(session: Session) -> str:
    from ._token import format_rfc3339

    held = session.source.status(read_store=False)
    expiry = held.memory_expiry
    until = (f"; the access token is valid until {format_rfc3339(expiry.timestamp())}"
             if expiry else "")
    target = f" for the {session.kind.describe} {session.name}" if session.name else ""
    who = _who(dict(held.identity))
    as_who = f" as {who}" if who else ""
    return (f"Logged in to {session.oidc.issuer}{as_who} (client {session.oidc.client_id})"
            f"{target}{until}.")


# ------------------------------------------------------------------------------ logout


def _logout(args: argparse.Namespace, holder: list[Session]) -> int:
    from .profiles import NotConfiguredError

    try:
        session = _open(args, holder, interactive=False)
    except NotConfiguredError as exc:
        # An unknown profile or registry holds no session: logging out of it succeeds.
        _say(f"Nothing to log out of: {exc.message}.")
        return EXIT_OK
    result = session.source.logout_result()
    session.forget()
    if IDENTITY_FIELD in (session.entry or {}) and session.kind.section and session.name:
        session.config.set_entry(session.kind.section, session.name, {IDENTITY_FIELD: None})
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
    return name


def _warn_plaintext(session: Session, command: str) -> None:
    """When a command used a plaintext keyring backend, say so, and who chose it (the
    variable, the file, or neither). `login` and `status` say it every time; `token`,
    which a credential helper runs for every command, once a day (`warn_once_a_day`)."""
    keyring = _keyring_of(session.store)
    if keyring is None or not keyring.loaded:
        return  # never used: nothing was read or written through it
    try:
        plaintext = keyring.is_plaintext
        name = keyring.backend_name
    except OAuthAuthError:
        return
    if plaintext:
        from ._cli_store import backend_chosen_by, warn_once_a_day

        if command == "token" and not warn_once_a_day(f"plaintext {name}"):
            return

        _say(f"{PROG}: warning: the keyring backend {name} keeps secrets unencrypted on disk"
             f" ({backend_chosen_by()})")


def _status(args: argparse.Namespace, holder: list[Session]) -> int:
    """Who is logged in and what each tier holds; with --check, what the provider says.

    The verdict ("usable") is three-valued: yes, no (a login fixes it: exit 4), or
    unknown (the secrets store failed, which a login cannot fix: exit 1). `--json`
    prints the document in every case, errors included.
    """
    try:
        session = _open(args, holder, interactive=False, secret_needed=False)
    except OAuthAuthError as exc:
        if args.json:
            _emit(_json({"usable": False if _exit_code(exc) == EXIT_LOGIN_REQUIRED else None,
                         "state": _state_of(exc), "errors": [exc.message]}))
        raise
    info = _status_info(session)
    failure: OAuthAuthError | None = None
    if args.check and info["usable"] is not None:
        failure = _check_with_provider(session, args, holder, info)
    if args.json:
        _emit(_json(info))
    else:
        _print_status(info)
    if info["usable"]:
        return EXIT_OK
    if failure is not None:
        raise failure
    if info["usable"] is None:
        raise info["_error"]
    _say(f"Not logged in; run: {session.login_command}")
    return EXIT_LOGIN_REQUIRED


def _json(doc: dict[str, Any]) -> str:
    import json

    return json.dumps({k: v for k, v in doc.items() if not k.startswith("_")}, indent=2) + "\n"


def _state_of(exc: BaseException) -> str:
    if isinstance(exc, InvalidGrantError):
        return "session ended (the provider refused the refresh token)"
    if isinstance(exc, LoginRequiredError):
        return "not logged in"
    if isinstance(exc, SecretsError):
        return "unknown (the secrets store failed)"
    return "unknown (the check failed)"


def _status_info(session: Session) -> dict[str, Any]:
    """The status document (no secret): settings, identity, tiers, verdict."""
    from ._token import format_rfc3339

    view = session.source.status()
    errors: list[OAuthAuthError] = list(view.errors)
    at_fresh = view.shared_fresh
    rt_present = view.stored_refresh_token
    ident = (session.entry or {}).get(IDENTITY_FIELD) if rt_present or at_fresh else None
    usable: bool | None
    if at_fresh or rt_present:
        usable = True
    elif rt_present is None:  # the store failed: nobody can tell, and a login won't fix it
        usable = None
    else:
        usable = False
    keyring = _keyring_of(session.store)
    plaintext = False
    if keyring is not None and keyring.loaded:
        try:
            plaintext = bool(keyring.is_plaintext)
        except OAuthAuthError:
            plaintext = False
    entry = session.entry or {}
    rt_state = {True: "stored (not checked with the provider; --check asks it)",
                False: "none", None: "unknown (the secrets store failed)"}[rt_present]
    if usable:
        state = ("logged in" if at_fresh else
                 "logged in, if the provider still accepts the refresh token (--check asks)")
    else:
        state = "not logged in" if usable is False else "unknown (the secrets store failed)"
    expiry = view.shared_expiry
    return {
        "kind": session.kind.name,
        "name": session.name,
        "profile": session.name if session.kind.name == "profile" else None,
        "issuer": session.oidc.issuer,
        "client_id": session.oidc.client_id,
        "audience": session.oidc.audience,
        "scopes": list(session.oidc.scopes),
        "preset": session.oidc.provider_preset.name,
        "confidential": session.confidential,
        "config_file": str(session.config.path),
        "config_entry": session.entry is not None,
        "key": session.key,
        "secrets_backend": _store_name(session) + (
            "; an access token injected in the environment (read-only) is read first"
            if session.kind.env_first else ""),
        "plaintext": plaintext,
        "identity": dict(ident) if isinstance(ident, dict) else {},
        "access_token": {
            "present": view.shared_token,
            "expiry": format_rfc3339(expiry.timestamp()) if expiry is not None else None,
            "usable": at_fresh,
            "source": (_at_origin(session) if view.shared_token else None),
        },
        "refresh_token": {"present": rt_present, "state": rt_state, "checked": False},
        "cached_token_expiry": entry.get("cached_token_expiry"),
        "usable": usable,
        "state": state,
        "errors": list(dict.fromkeys(e.message for e in errors)),
        "_error": errors[0] if errors else None,
    }


def _check_with_provider(session: Session, args: argparse.Namespace, holder: list[Session],
                         info: dict[str, Any]) -> OAuthAuthError | None:
    """`status --check`: refresh at the provider and put the answer into `info`."""
    rt = info["refresh_token"]
    if not rt["present"]:
        rt["checked"] = True
        return None  # nothing to ask about; the access token alone decides
    checking = _open(args, holder, hide_shared=True, interactive=False)
    rt["checked"] = True
    try:
        checking.source.token()
    except OAuthAuthError as exc:
        code = _exit_code(exc)
        info["usable"] = False if code == EXIT_LOGIN_REQUIRED else None
        info["state"] = _state_of(exc)
        rt["state"] = ("refused by the provider: log in again"
                       if isinstance(exc, InvalidGrantError) else f"unknown ({exc.message})")
        info["errors"].append(exc.message)
        return exc
    _remember_id_token(checking)
    ident = _identity(checking)
    if ident:
        info["identity"] = ident
    info["usable"] = True
    info["state"] = "logged in (checked with the provider)"
    rt["state"] = "works (the provider accepted it just now)"
    return None


def _at_origin(session: Session) -> str:
    """Where the access token came from, for the LLM profile's environment injection."""
    if not session.kind.env_first:
        return "store"
    from ._keys import env_access_token_var

    variable = env_access_token_var(session.key, session.kind.scope)
    return f"environment variable {variable}" if os.environ.get(variable) else "store"


_LABELS = {"registry": "registry", "llm": "LLM gateway", "profile": "profile",
           "resource": "resource"}


def _print_status(info: dict[str, Any]) -> None:
    import time
    from datetime import datetime

    now = time.time()
    at = info["access_token"]
    if not at["present"]:
        at_text = "none"
    else:
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
    kind = info["kind"]
    label = _LABELS.get(kind, "profile")
    rows = [(label, info["name"] if kind != "adhoc" else "none (ad-hoc flags)"),
            ("issuer", info["issuer"]),
            ("client id", info["client_id"] + (" (confidential)" if info["confidential"]
                                                else ""))]
    identity = info["identity"]
    if identity:
        rows.append(("logged in as", _who(identity)))
    if info["audience"]:
        rows.append(("audience", info["audience"]))
    rows += [
        ("scopes", " ".join(info["scopes"])),
        ("preset", info["preset"]),
        ("config file", info["config_file"] + ("" if info["config_entry"] or
                                               kind == "adhoc" else " (no entry)")),
        ("secrets key", info["key"]),
        ("secrets", info["secrets_backend"]
         + (" WARNING: plaintext on disk" if info["plaintext"] else "")),
        ("access token", at_text),
        ("refresh token", info["refresh_token"]["state"]),
        ("usable", {True: "yes", False: "no (login required)",
                    None: "unknown (the secrets store failed; a login would not fix it)"}
         [info["usable"]] + ("" if info["usable"] is not True or "checked" not in
                             info["state"] else ", checked with the provider")),
    ]
    for error in info["errors"]:
        rows.append(("error", error))
    width = max(len(name) for name, _ in rows) + 1
    _emit("".join(f"{name + ':':<{width}} {value}\n" for name, value in rows))


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
