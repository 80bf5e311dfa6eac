"""Secret hygiene across the whole test run (a pytest plugin, loaded from tests/conftest.py).

Every secret the provider or the library produces during the run is collected, and so is
every text the library lets out; at the end of the session the run FAILS if any secret
appears in any text. The report names each leak by the secret's fingerprint (never the
secret), where it was seen and in which test.

Secrets come from:

- `IdPHttp.post_form` / `post_form_status` (the library's every token, code exchange,
  device poll and revocation): the form's `refresh_token`, `code`, `code_verifier`,
  `device_code`, `token`, and the answer's `access_token`, `refresh_token`, `id_token`,
  `device_code`;
- the PKCE verifier as `_authorize.new_code_verifier` makes it, and the code the loopback
  server accepts;
- the bench: `tests.support.idp.token_request` (behind `obtain_tokens`, `refresh`, ...)
  and the in-process `FakeProvider`.

Texts come from:

- every record of the "oauth_auth" logger at DEBUG (message and formatted traceback),
  through a handler installed for the whole session;
- the locals of the traceback frames of every exception the run sees leave a call:
  each one `pytest.raises` catches, each one a test fails with (both through
  `pytest.ExceptionInfo`), and each one a log record carries, rendered the way error
  trackers and `pytest -l` render them
  (`traceback.TracebackException(..., capture_locals=True)`). The frames of test code
  (tests/) and of pytest are left out: they hold the secrets a test works with;
- every `OAuthAuthError` (and `StateMismatch`) the library builds: `str`, `repr` and its
  string attributes (description, hint, ...);
- the `repr` of every library class that defines one;
- whatever `oauth_auth.cli.main` writes to stderr.

Files: every lock file (`_locking.process_lock`, the keyring lock) and config file
(`Config._write`) the library writes is checked while it exists: mode 0600 (no group or
other bits) and no secret in it.

OAUTH_AUTH_NO_HYGIENE=1 turns the plugin off (to bisect a failure; CI keeps it on).

Values shorter than `MIN_SECRET` (12) are ignored: the unit-test fakes issue tokens like
``at-1`` that would match innocent text; real tokens, codes and verifiers are 43+ chars.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import logging
import os
import pkgutil
import stat
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

__all__ = ["LEDGER", "Ledger", "fingerprint"]

#: Shortest value treated as a secret (see the module docstring).
MIN_SECRET = 12
#: Form and JSON members that carry secrets.
REQUEST_SECRETS = ("refresh_token", "code", "code_verifier", "device_code", "token",
                   "subject_token", "actor_token", "client_assertion")
RESPONSE_SECRETS = ("access_token", "refresh_token", "id_token", "device_code")
_PREFIX = 8


def fingerprint(secret: str) -> str:
    """What the report shows instead of a secret (the library's own 8-hex-char tag)."""
    return hashlib.sha256(secret.encode()).hexdigest()[:8]


@dataclass
class Leak:
    secret_fp: str
    secret_origin: str
    where: str
    test: str
    excerpt: str


@dataclass
class Ledger:
    """What the run produced (secrets) and what the library let out (texts, files)."""

    secrets: dict[str, str] = field(default_factory=dict)  # value -> origin
    texts: list[tuple[str, str, str]] = field(default_factory=list)  # where, test, text
    files: dict[str, tuple[str, str]] = field(default_factory=dict)  # path -> kind, test
    file_problems: list[str] = field(default_factory=list)
    current_test: str = "<session>"
    counts: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def secret(self, value: object, origin: str) -> None:
        if isinstance(value, str) and len(value) >= MIN_SECRET:
            with self._lock:
                self.secrets.setdefault(value, f"{origin} in {self.current_test}")

    def secrets_in(self, doc: object, names: tuple[str, ...], origin: str) -> None:
        if isinstance(doc, Mapping):
            for name in names:
                self.secret(doc.get(name), f"{origin} {name}")

    def text(self, where: str, value: object) -> None:
        if isinstance(value, str) and value:
            with self._lock:
                self.texts.append((where, self.current_test, value))
                kind = where.split(":", 1)[0]
                self.counts[kind] = self.counts.get(kind, 0) + 1

    def file(self, path: os.PathLike[str] | str, kind: str, *, created: bool = True) -> None:
        """Check a file the library wrote, now (it may be gone by the end of the run).

        The mode is checked only when the library created the file: a test that makes a
        lock file itself to play "another process" chooses its mode.
        """
        p = Path(path)
        with self._lock:
            self.files[str(p)] = (kind, self.current_test)
        try:
            mode = stat.S_IMODE(p.stat().st_mode)
            data = p.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return
        if created and mode & 0o077:
            self.file_problems.append(
                f"{kind} file {p} has mode {mode:04o}, not 0600 ({self.current_test})"
            )
        self.text(f"file:{kind}", data)

    def leaks(self) -> list[Leak]:
        """Every (secret, text) pair where the text contains the secret."""
        index: dict[str, list[str]] = {}
        for value in self.secrets:
            index.setdefault(value[:_PREFIX], []).append(value)
        found: list[Leak] = []
        seen: set[tuple[str, str, str]] = set()
        for where, test, text in self.texts:
            for i in range(len(text) - _PREFIX + 1):
                for value in index.get(text[i : i + _PREFIX], ()):
                    if text.startswith(value, i) and (value, where, test) not in seen:
                        seen.add((value, where, test))
                        fp = fingerprint(value)
                        excerpt = text[max(0, i - 60) : i + len(value) + 60].replace(
                            value, f"<secret {fp}>"
                        )
                        found.append(Leak(fp, self.secrets[value], where, test,
                                          " ".join(excerpt.split())))
        return found


LEDGER = Ledger()


class _LogTap(logging.Handler):
    """Keeps the text of every "oauth_auth" record, DEBUG included."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self._formatter = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            LEDGER.text(f"log:{record.name}:{record.levelname}", record.getMessage())
            if record.exc_info:
                LEDGER.text(f"log-traceback:{record.name}",
                            self._formatter.formatException(record.exc_info))
                if record.exc_info[1] is not None:
                    traceback_locals(record.exc_info[1], f"log:{record.name}")
        except Exception:  # a broken record is not this plugin's business
            LEDGER.text("log:unformattable", repr(record.msg))


class _StderrTee:
    """sys.stderr during `cli.main`: writes go through and are kept.

    A plain object, not an `io.TextIOBase`: an IOBase flushes itself when collected, and by
    then the stream it wraps (pytest's capture) may be closed (Python 3.13 reports that).
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.chunks: list[str] = []

    def write(self, s: str) -> int:
        self.chunks.append(s)
        return int(self._inner.write(s) or len(s))

    def flush(self) -> None:
        self._inner.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _Patches:
    """Attribute replacements, undone in reverse order."""

    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []

    def set(self, owner: Any, name: str, value: Any) -> None:
        old = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
        setattr(owner, name, value)
        self._undo.append(lambda: setattr(owner, name, old))

    def undo(self) -> None:
        while self._undo:
            self._undo.pop()()


_PATCHES = _Patches()
_TAP = _LogTap()
_saved_level: list[int] = []


def _install() -> None:
    """Every hook point, in one place."""
    from oauth_auth import _authorize, _http, _locking, _loopback, errors

    # -- secrets from the library's provider calls -------------------------------------
    post_form = _http.IdPHttp.post_form
    post_form_status = _http.IdPHttp.post_form_status

    def client_secret(kw: Mapping[str, Any]) -> None:
        client = kw.get("client")
        LEDGER.secret(getattr(client, "client_secret", None), "library client_secret")

    @functools.wraps(post_form)
    def tapped_post_form(self: Any, url: str, data: Mapping[str, str], **kw: Any) -> Any:
        LEDGER.secrets_in(data, REQUEST_SECRETS, "library request")
        client_secret(kw)
        status, doc = post_form(self, url, data, **kw)
        LEDGER.secrets_in(doc, RESPONSE_SECRETS, "library response")
        return status, doc

    @functools.wraps(post_form_status)
    def tapped_post_form_status(
        self: Any, url: str, data: Mapping[str, str], **kw: Any
    ) -> int:
        LEDGER.secrets_in(data, REQUEST_SECRETS, "library request")
        client_secret(kw)
        return post_form_status(self, url, data, **kw)  # type: ignore[no-any-return]

    _PATCHES.set(_http.IdPHttp, "post_form", tapped_post_form)
    _PATCHES.set(_http.IdPHttp, "post_form_status", tapped_post_form_status)

    _tap_result(_authorize, "new_code_verifier", "PKCE verifier")
    _tap_result(_loopback, "parse_callback", "authorization code (loopback)")

    # -- secrets from the bench ----------------------------------------------------------
    try:
        from tests.support import fakes, idp
    except ImportError:  # pragma: no cover - the bench is part of this repository
        pass
    else:
        token_request = idp.token_request

        @functools.wraps(token_request)
        def tapped_token_request(provider: Any, data: dict[str, str], **kw: Any) -> Any:
            LEDGER.secrets_in(data, REQUEST_SECRETS, "bench request")
            response = token_request(provider, data, **kw)
            with contextlib.suppress(ValueError):
                LEDGER.secrets_in(response.json(), RESPONSE_SECRETS, "bench response")
            return response

        _PATCHES.set(idp, "token_request", tapped_token_request)

        handle = fakes.FakeProvider.handle

        @functools.wraps(handle)
        def tapped_handle(self: Any, request: Any) -> Any:
            from urllib.parse import parse_qs

            form = {k: v[0] for k, v in parse_qs(request.content.decode("utf-8",
                                                                         "replace")).items()}
            LEDGER.secrets_in(form, REQUEST_SECRETS, "fake provider request")
            response = handle(self, request)
            with contextlib.suppress(ValueError, UnicodeDecodeError):
                import json

                LEDGER.secrets_in(json.loads(response.content), RESPONSE_SECRETS,
                                  "fake provider response")
            return response

        _PATCHES.set(fakes.FakeProvider, "handle", tapped_handle)

    # -- texts: logs ---------------------------------------------------------------------
    logger = logging.getLogger("oauth_auth")
    _saved_level.append(logger.level)
    logger.setLevel(logging.DEBUG)
    logger.addHandler(_TAP)

    # -- texts: exceptions -------------------------------------------------------------
    base_init = errors.OAuthAuthError.__init__

    @functools.wraps(base_init)
    def tapped_init(self: BaseException, *args: Any, **kwargs: Any) -> None:
        base_init(self, *args, **kwargs)  # type: ignore[arg-type]
        _exception_texts(self)

    _PATCHES.set(errors.OAuthAuthError, "__init__", tapped_init)

    mismatch_init = _authorize.StateMismatch.__init__

    @functools.wraps(mismatch_init)
    def tapped_mismatch(self: BaseException, *args: Any, **kwargs: Any) -> None:
        mismatch_init(self, *args, **kwargs)  # type: ignore[arg-type]
        _exception_texts(self)

    _PATCHES.set(_authorize.StateMismatch, "__init__", tapped_mismatch)

    # -- texts: the locals of traceback frames -----------------------------------------
    _install_traceback_taps()

    # -- texts: reprs --------------------------------------------------------------------
    import oauth_auth

    for info in pkgutil.iter_modules(oauth_auth.__path__, "oauth_auth."):
        if info.name.endswith("__main__"):
            continue
        try:
            module = importlib.import_module(info.name)
        except Exception:  # noqa: S112 - a module being written may not import yet
            continue
        for obj in list(vars(module).values()):
            if (
                isinstance(obj, type)
                and obj.__module__ == module.__name__
                and "__repr__" in obj.__dict__
                and not issubclass(obj, BaseException)
            ):
                _PATCHES.set(obj, "__repr__", _tapped_repr(obj.__dict__["__repr__"], obj))

    # -- texts: the command's stderr -----------------------------------------------------
    try:
        from oauth_auth import cli
    except Exception:  # the command may be being written
        cli = None
    if cli is not None and hasattr(cli, "main"):
        main = cli.main

        @functools.wraps(main)
        def tapped_main(argv: Any = None) -> int:
            tee = _StderrTee(sys.stderr)
            saved, sys.stderr = sys.stderr, tee
            try:
                return main(argv)  # type: ignore[no-any-return]
            finally:
                if sys.stderr is tee:
                    sys.stderr = saved
                LEDGER.text("cli-stderr", "".join(tee.chunks))

        _PATCHES.set(cli, "main", tapped_main)

    # -- files -----------------------------------------------------------------------------
    process_lock = _locking.process_lock

    @contextlib.contextmanager
    def tapped_process_lock(path: Path, timeout: float, **kwargs: Any) -> Iterator[None]:
        existed = Path(path).exists()
        with process_lock(path, timeout, **kwargs):
            LEDGER.file(path, kwargs.get("what", "refresh lock"), created=not existed)
            yield

    _PATCHES.set(_locking, "process_lock", tapped_process_lock)

    try:
        from oauth_auth import _config
    except Exception:  # the config module may be being written
        _config = None
    if _config is not None and hasattr(_config, "Config"):
        write = _config.Config._write

        @functools.wraps(write)
        def tapped_write(self: Any, doc: Any) -> None:
            write(self, doc)
            LEDGER.file(self.path, "config")

        _PATCHES.set(_config.Config, "_write", tapped_write)

    from oauth_auth import secrets as secrets_module

    locked = secrets_module.KeyringSecrets._locked

    @contextlib.contextmanager
    def tapped_locked(self: Any, *args: Any, **kwargs: Any) -> Iterator[None]:
        paths = [Path(p) for p in self._lock_paths] if self._use_file_lock else []
        existed = {p: p.exists() for p in paths}
        with locked(self, *args, **kwargs):
            for p in paths:
                LEDGER.file(p, "keyring lock", created=not existed[p])
            yield

    _PATCHES.set(secrets_module.KeyringSecrets, "_locked", tapped_locked)


def _tap_result(module: Any, name: str, origin: str) -> None:
    """Record what `module.name(...)` returns as a secret (a verifier, a code)."""
    original = getattr(module, name)

    @functools.wraps(original)
    def tapped(*args: Any, **kwargs: Any) -> Any:
        value = original(*args, **kwargs)
        LEDGER.secret(value, origin)
        return value

    _PATCHES.set(module, name, tapped)


_OWN_CODE = (
    str(Path(__file__).resolve().parents[1]) + os.sep,  # tests/
    os.sep + "_pytest" + os.sep,
    os.sep + "pluggy" + os.sep,
)
_in_traceback_check = threading.local()


def traceback_locals(exc: BaseException, where: str) -> None:
    """Record the locals of `exc`'s traceback frames (and of the exceptions chained to
    it, as a traceback printer follows them), rendered with `capture_locals=True`."""
    if getattr(_in_traceback_check, "active", False):
        return  # a repr of a local raised: that exception is not the library's
    _in_traceback_check.active = True
    try:
        te = traceback.TracebackException(
            type(exc), exc, exc.__traceback__, capture_locals=True
        )
        pending = [te]
        seen: set[int] = set()
        while pending:
            current = pending.pop()
            if id(current) in seen:
                continue
            seen.add(id(current))
            for frame in current.stack:
                if frame.locals and not any(part in frame.filename for part in _OWN_CODE):
                    LEDGER.text(
                        f"traceback-locals:{where}:{frame.name}",
                        "\n".join(f"{k} = {v}" for k, v in frame.locals.items()),
                    )
            pending.extend(e for e in (current.__cause__, current.__context__) if e)
            pending.extend(getattr(current, "exceptions", None) or ())
    except Exception:  # a local whose repr fails is not this check's business
        pass
    finally:
        _in_traceback_check.active = False


def _install_traceback_taps() -> None:
    """Every exception pytest wraps in an ExceptionInfo: `pytest.raises` fills one, and
    a test's failure is made into one."""
    info_cls = pytest.ExceptionInfo
    fill = info_cls.fill_unfilled

    @functools.wraps(fill)
    def tapped_fill(self: Any, exc_info: Any) -> None:
        fill(self, exc_info)
        if exc_info[1] is not None:
            traceback_locals(exc_info[1], "pytest.raises")

    _PATCHES.set(info_cls, "fill_unfilled", tapped_fill)

    from_exc_info = info_cls.__dict__["from_exc_info"].__func__

    @functools.wraps(from_exc_info)
    def tapped_from_exc_info(cls: Any, exc_info: Any, exprinfo: Any = None) -> Any:
        if exc_info[1] is not None and not isinstance(
            exc_info[1], (pytest.skip.Exception, pytest.xfail.Exception)
        ):
            traceback_locals(exc_info[1], "test failure")
        return from_exc_info(cls, exc_info, exprinfo)

    _PATCHES.set(info_cls, "from_exc_info", classmethod(tapped_from_exc_info))


def _exception_texts(exc: BaseException) -> None:
    name = type(exc).__name__
    with contextlib.suppress(Exception):
        LEDGER.text(f"exception:{name}", str(exc))
        LEDGER.text(f"exception-repr:{name}", repr(exc))
        for attr, value in vars(exc).items():
            if isinstance(value, str):
                LEDGER.text(f"exception-attr:{name}.{attr}", value)


def _tapped_repr(original: Callable[[Any], str], cls: type) -> Callable[[Any], str]:
    @functools.wraps(original)
    def tapped(self: Any) -> str:
        text = original(self)
        LEDGER.text(f"repr:{cls.__qualname__}", text)
        return text

    return tapped


def _uninstall() -> None:
    _PATCHES.undo()
    logger = logging.getLogger("oauth_auth")
    logger.removeHandler(_TAP)
    if _saved_level:
        logger.setLevel(_saved_level.pop())


# ---------------------------------------------------------------------------- pytest hooks


def pytest_configure(config: pytest.Config) -> None:
    if getattr(config, "workerinput", None) is not None or os.environ.get(
        "OAUTH_AUTH_NO_HYGIENE"
    ):
        return
    config._oauth_auth_hygiene = True  # type: ignore[attr-defined]
    _install()


def pytest_unconfigure(config: pytest.Config) -> None:
    if getattr(config, "_oauth_auth_hygiene", False):
        _uninstall()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    LEDGER.current_test = item.nodeid
    try:
        return (yield)
    finally:
        LEDGER.current_test = "<session>"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not getattr(session.config, "_oauth_auth_hygiene", False):
        return
    leaks = LEDGER.leaks()
    session.config._oauth_auth_leaks = leaks  # type: ignore[attr-defined]
    if (leaks or LEDGER.file_problems) and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if not getattr(config, "_oauth_auth_hygiene", False):
        return
    leaks: list[Leak] = getattr(config, "_oauth_auth_leaks", [])
    tr = terminalreporter
    counts = ", ".join(f"{n} {k}" for k, n in sorted(LEDGER.counts.items()))
    if not leaks and not LEDGER.file_problems:
        tr.write_line(
            f"secret hygiene: {len(LEDGER.secrets)} secrets checked against"
            f" {len(LEDGER.texts)} texts ({counts}): no leak"
        )
        return
    tr.section("secret hygiene: FAILED", sep="=", red=True, bold=True)
    for leak in leaks:
        tr.write_line(
            f"secret {leak.secret_fp} ({leak.secret_origin}) appears in {leak.where}"
            f" during {leak.test}: ...{leak.excerpt}..."
        )
    for problem in LEDGER.file_problems:
        tr.write_line(problem)
