"""The oauth-auth config file: named profiles and the registry and LLM gateway entries.

One JSON or TOML document, by default ``<user config dir>/oauth-auth/config.json``
(`platformdirs`; ``config.toml`` there is used instead when only it exists; the environment
variable ``OAUTH_AUTH_CONFIG`` names another file). A file whose name ends in ``.toml`` is
TOML, any other is JSON, and it is written back in the same format::

    {
      "version": 1,
      "profiles":     {"<name>":        {<entry>}},
      "registries":   {"<registry url>": {<entry>}},
      "llm_gateways": {"<gateway url>":  {<entry>}}
    }

or, in TOML::

    version = 1
    [profiles.work]
    issuer = "https://idp.example.com"
    client_id = "cli"
    [registries."https://registry.example.com"]
    ...

where an entry holds ``issuer``, ``client_id``, ``scopes`` (a list), ``audience``,
``callback_port`` and, once a login has stored a session, ``cached_refresh_token_ref`` (the
secrets key of the refresh token, never the token) and ``cached_token_expiry`` (RFC 3339
UTC expiry of the access token issued with it). Keys this version does not know are kept.

Reading needs no lock: every write replaces the whole file atomically (a temporary file in
the same directory, fsync, `os.replace`, mode 0600; a new directory gets mode 0700), so a
reader sees the old or the new document, never half of one. Writers do their
read-modify-write under a file lock (`_locking.config_lock_path`), so two processes that
log in at once both keep their entry. A file that cannot be parsed is a `ConfigError`
naming it, and is never overwritten.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ._keys import same_url
from .errors import ConfigError

__all__ = [
    "CONFIG_ENV",
    "CONFIG_VERSION",
    "LLM_GATEWAYS",
    "PROFILES",
    "REGISTRIES",
    "RESOURCES",
    "SECTIONS",
    "Config",
    "config_path",
    "existing_key",
    "is_toml",
]

#: Environment variable naming the config file (overrides the platform default).
CONFIG_ENV = "OAUTH_AUTH_CONFIG"
#: The document version this code writes; newer versions are refused, not rewritten.
CONFIG_VERSION = 1
PROFILES = "profiles"
REGISTRIES = "registries"
LLM_GATEWAYS = "llm_gateways"
#: Resources found by RFC 9728 discovery (`resource_auth`, `--resource`), by canonical URL.
RESOURCES = "resources"
SECTIONS = (PROFILES, REGISTRIES, LLM_GATEWAYS, RESOURCES)
#: Seconds to wait for another process's config write.
LOCK_TIMEOUT = 30.0

_STRING_FIELDS = ("issuer", "client_id", "audience", "cached_refresh_token_ref",
                  "cached_token_expiry")


def config_path() -> Path:
    """The config file: ``$OAUTH_AUTH_CONFIG``, else the platform's user config directory."""
    override = os.environ.get(CONFIG_ENV)
    if override:
        return Path(override).expanduser()
    import platformdirs

    directory = Path(platformdirs.user_config_dir("oauth-auth", appauthor=False))
    json_path, toml_path = directory / "config.json", directory / "config.toml"
    if toml_path.exists() and not json_path.exists():
        return toml_path
    return json_path


def is_toml(path: Path) -> bool:
    """Whether the config file at `path` is TOML (by its name), else JSON."""
    return path.suffix.lower() == ".toml"


def _empty() -> dict[str, Any]:
    return {"version": CONFIG_VERSION, **{section: {} for section in SECTIONS}}


def _validate(doc: Any, path: Path) -> dict[str, Any]:
    """Check the document's shape; raise ConfigError naming the file and the problem."""

    def corrupt(why: str) -> ConfigError:
        return ConfigError(
            f"the config file {path} is invalid: {why}",
            hint=f"fix it by hand, or move it away (it is never overwritten while invalid);"
            f" ${CONFIG_ENV} selects another file",
        )

    if not isinstance(doc, dict):
        raise corrupt("it is not a JSON object (or TOML table)")
    version = doc.get("version", CONFIG_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise corrupt(f"version {version!r} is not a positive integer")
    if version > CONFIG_VERSION:
        raise ConfigError(
            f"the config file {path} has version {version}, newer than this oauth-auth"
            f" understands ({CONFIG_VERSION})",
            hint="upgrade oauth-auth",
        )
    for section in SECTIONS:
        entries = doc.setdefault(section, {})
        if not isinstance(entries, dict):
            raise corrupt(f"{section!r} is not an object")
        for name, entry in entries.items():
            where = f"{section}[{name!r}]"
            if not isinstance(entry, dict):
                raise corrupt(f"{where} is not an object")
            for field in _STRING_FIELDS:
                value = entry.get(field)
                if value is not None and not isinstance(value, str):
                    raise corrupt(f"{where}.{field} is not a string")
            scopes = entry.get("scopes")
            if scopes is not None and (
                not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes)
            ):
                raise corrupt(f"{where}.scopes is not a list of strings")
            port = entry.get("callback_port")
            if port is not None and (
                not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535
            ):
                raise corrupt(f"{where}.callback_port is not a TCP port number")
    doc["version"] = version
    return doc


class Config:
    """One config file. Cheap to create; nothing is read until asked.

    Safe for concurrent use by threads and processes: reads see whole documents, and
    `update` serializes writers with a file lock.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else config_path()

    def __repr__(self) -> str:
        return f"Config({str(self.path)!r})"

    @property
    def lock_path(self) -> Path:
        """The lock file serializing writers (in the lock directory, like every lock)."""
        from ._locking import config_lock_path

        return config_lock_path(self.path)

    def load(self) -> dict[str, Any]:
        """The whole document (an empty one when the file does not exist).

        Raises:
            ConfigError: the file cannot be read or parsed, or has the wrong shape.
        """
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return _empty()
        except OSError as exc:
            raise ConfigError(
                f"cannot read the config file {self.path}: {exc.strerror or exc}",
                hint=f"check its permissions, or set ${CONFIG_ENV} to another file",
            ) from None
        toml = is_toml(self.path)
        try:
            doc = _parse_toml(raw.decode("utf-8")) if toml else json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # deep nesting too
            # (tomllib's TOMLDecodeError is a ValueError whose message names the line)
            where = (f" ({exc})" if toml
                     else f" (line {exc.lineno})" if isinstance(exc, json.JSONDecodeError)
                     else "")
            raise ConfigError(
                f"the config file {self.path} is not valid {'TOML' if toml else 'JSON'}{where}",
                hint="fix it by hand, or move it away (it is never overwritten while"
                f" invalid); ${CONFIG_ENV} selects another file",
            ) from None
        return _validate(doc, self.path)

    def entry(self, section: str, name: str) -> dict[str, Any] | None:
        """A copy of one entry, or None. URLs also match without a trailing slash."""
        entries: dict[str, Any] = self.load()[section]
        found = entries.get(existing_key(entries, name, section))
        return dict(found) if found is not None else None

    def update(self, change: Callable[[dict[str, Any]], bool | None]) -> None:
        """Read, let `change` edit the document in place, write it back atomically.

        All of it happens under the config's file lock. `change` returning False means
        "nothing changed": the file is then left as it was (and not created).

        Raises:
            ConfigError: the file is invalid (it is left untouched) or cannot be written.
        """
        with self._locked():
            doc = self.load()
            if change(doc) is False:
                return
            self._write(doc)

    def set_entry(self, section: str, name: str, values: dict[str, Any]) -> None:
        """Merge `values` into an entry (created if needed); a None value removes a field."""

        def change(doc: dict[str, Any]) -> bool:
            entries: dict[str, Any] = doc[section]
            key = existing_key(entries, name, section)
            entry = dict(entries.get(key, {}))
            for field, value in values.items():
                if value is None:
                    entry.pop(field, None)
                else:
                    entry[field] = value
            if entries.get(key) == entry:
                return False
            entries[key] = entry
            return True

        self.update(change)

    def forget_session(self, section: str, name: str) -> None:
        """Drop an entry's cached ref and expiry (after a logout); no entry, no write."""

        def change(doc: dict[str, Any]) -> bool:
            entries: dict[str, Any] = doc[section]
            key = existing_key(entries, name, section)
            entry = entries.get(key)
            if not entry or not {"cached_refresh_token_ref", "cached_token_expiry"} & set(entry):
                return False
            entry.pop("cached_refresh_token_ref", None)
            entry.pop("cached_token_expiry", None)
            return True

        if self.path.exists():
            self.update(change)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        from ._locking import process_lock

        self._ensure_dir()
        with process_lock(self.lock_path, LOCK_TIMEOUT, what="config lock",
                          hint="another oauth-auth process may be stuck; stop it and try"
                          " again"):
            yield

    def _ensure_dir(self) -> None:
        directory = self.path.parent
        if directory.is_dir():
            return
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the config directory {directory}: {exc.strerror or exc}",
                hint=f"set ${CONFIG_ENV} to a writable location",
            ) from None

    def _write(self, doc: dict[str, Any]) -> None:
        """Replace the file atomically with `doc` (mode 0600, fsync'd); a TOML file keeps
        its comments and layout (see `_dump_toml`)."""
        import tempfile

        self._ensure_dir()
        if is_toml(self.path):
            # Over the file as it is (we hold the lock, so as `load` read it): what the
            # user wrote, comments included, stays where it was.
            try:
                original = self.path.read_text(encoding="utf-8")
            except FileNotFoundError:
                original = ""
            except (OSError, UnicodeDecodeError):
                original = ""  # `load` would have refused it; write a fresh document
            text = _dump_toml(doc, original)
        else:
            text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
        data = text.encode("utf-8")
        tmp = ""
        try:
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.",
                                       suffix=".tmp")  # mkstemp creates it with mode 0600
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
            tmp = ""
            _fsync_dir(self.path.parent)
        except OSError as exc:
            raise ConfigError(
                f"cannot write the config file {self.path}: {exc.strerror or exc}",
                hint=f"check the directory's permissions, or set ${CONFIG_ENV}",
            ) from None
        finally:
            if tmp:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)


def existing_key(entries: dict[str, Any], name: str, section: str) -> str:
    """`name`, or the key of an entry that differs from it only by a trailing slash."""
    if name in entries or section == PROFILES:
        return name
    return next((k for k in entries if same_url(k, name)), name)


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable (POSIX); a no-op where directories cannot be opened."""
    if os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------ TOML


def _parse_toml(text: str) -> Any:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    return tomllib.loads(text)


def _dump_toml(doc: dict[str, Any], original: str = "") -> str:
    """`doc` as TOML, written over `original` (the file as it was) with tomlkit.

    Users edit this file by hand, so a write-back changes only what changed: a key whose
    value is the same keeps its place, its formatting and the comments around it; a new
    key is added to its table, a removed one dropped. A None, which TOML cannot hold, is
    dropped. tomlkit is imported here only: reading the file (every `token()` that looks
    at its profile) uses the standard library's parser.
    """
    import tomlkit

    document = tomlkit.parse(original) if original.strip() else tomlkit.document()
    _sync_table(document, doc)
    return tomlkit.dumps(document)


def _sync_table(table: Any, values: dict[str, Any]) -> None:
    """Make the tomlkit `table` hold `values`, touching only the keys that differ."""
    for key in [k for k in table if values.get(k) is None]:
        del table[key]
    for key, value in values.items():
        if value is None:
            continue
        current = table.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            _sync_table(current, value)
        elif _plain(current) != value or type(_plain(current)) is not type(value):
            table[key] = _without_none(value)


def _plain(item: Any) -> Any:
    """A tomlkit item as the plain value `tomllib` reads (to compare with `doc`)."""
    return item.unwrap() if hasattr(item, "unwrap") else item


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_without_none(v) for v in value if v is not None]
    return value
