"""The profile file: auth profile metadata in one JSON file, shared safely.

Profile metadata (never a secret: those live in the vault) is kept in
``<home>/auth_profiles.json`` as ``{"version": 1, "profiles": [...]}``, the
records sorted by id. Readers take no lock: writers replace the file by
rename, so a reader always sees a whole file. Writers hold the file's lock
(``auth_profiles.json.lock``, see ``locks``), re-read, change and replace.

A file that cannot be read as profiles is moved aside, under the lock, to
``auth_profiles.json.damaged-<UTC time>`` and reported as a
`palyra.AuthProfileError` that names positions, keys and types only: a user
may have pasted a secret into the file, so no value of it reaches a message.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import secrets
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from .._exceptions import AuthProfileError, PalyraError
from .locks import O_BINARY, file_error, hold, private_directory

__all__ = ["PROFILES_FILE", "VERSION", "ProfileFile", "default_home"]

PROFILES_FILE = "auth_profiles.json"
VERSION = 1

T = TypeVar("T")
Records = dict[str, dict[str, Any]]

_LOCK_NAME = re.compile(r"[a-z0-9._-]{1,128}")
_AFTER_DAMAGE = (
    "palyra starts a new, empty profile file; the secrets stay in the vault"
    ": add the profiles again, or repair the kept copy and"
    " move it back"
)


def default_home(
    home: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] = os.environ,
    platform: str = sys.platform,
) -> Path:
    """palyra's home directory, where the profile file and its locks live.

    Args:
        home: An explicit directory; wins over everything else (an empty
            one counts as none).
        environ: The environment to read (``PALYRA_HOME``, ``XDG_CONFIG_HOME``,
            ``APPDATA``, ``HOME``/``USERPROFILE``).
        platform: A `sys.platform` value choosing the platform's convention.

    Returns:
        ``home``, else ``$PALYRA_HOME``, else the user config directory:
        ``$XDG_CONFIG_HOME/palyra`` or ``~/.config/palyra`` (Linux and others),
        ``~/Library/Application Support/palyra`` (``darwin``),
        ``%APPDATA%\\palyra`` or ``~/AppData/Roaming/palyra`` (``win32``);
        with ``~`` expanded, absolute. Nothing is read but ``environ`` (and
        `Path.home` when it has no ``HOME``/``USERPROFILE``); nothing is made.
    """
    if home is not None and os.fspath(home):
        chosen = Path(home)
    elif environ.get("PALYRA_HOME"):
        chosen = Path(environ["PALYRA_HOME"])
    else:
        chosen = _config_dir(environ, platform) / "palyra"
    return _expand(chosen, environ, platform)


def _config_dir(environ: Mapping[str, str], platform: str) -> Path:
    if platform == "win32":
        appdata = environ.get("APPDATA")
        return Path(appdata) if appdata else Path("~", "AppData", "Roaming")
    if platform == "darwin":
        return Path("~", "Library", "Application Support")
    xdg = environ.get("XDG_CONFIG_HOME")
    # The XDG spec: a relative value is invalid and must be ignored.
    return Path(xdg) if xdg and Path(xdg).is_absolute() else Path("~", ".config")


def _expand(path: Path, environ: Mapping[str, str], platform: str) -> Path:
    if path.parts and path.parts[0] == "~":
        user_home = environ.get("USERPROFILE" if platform == "win32" else "HOME")
        path = Path(user_home or Path.home()).joinpath(*path.parts[1:])
    return path.expanduser().absolute()  # expanduser: the rarer ~user form


@dataclass(frozen=True)
class _Damage:
    """Why a profile file cannot be used; positions, keys and types only."""

    reason: str


class ProfileFile:
    """One JSON file of records keyed by id, shared by threads and processes.

    Constructing one does no I/O; directories are made (mode 0700) on the
    first write or lock, and the file is always mode 0600.

    Args:
        home: palyra's home directory (see `default_home`).
        lock_timeout: Seconds to wait for a lock before giving up with a
            `palyra.AuthProfileError`; nothing waits forever.
        validate: Called on each record read or written. Reading, a
            `ValueError` or `palyra.PalyraError` from it makes the file
            damaged; writing, its error propagates and nothing is written.
    """

    def __init__(
        self,
        home: str | os.PathLike[str],
        *,
        lock_timeout: float = 10.0,
        validate: Callable[[dict[str, Any]], object] | None = None,
    ) -> None:
        self.home = Path(home)
        self.path = self.home / PROFILES_FILE
        self.lock_timeout = lock_timeout
        self._validate = validate
        self._lock_path = self.home / f"{PROFILES_FILE}.lock"

    def __repr__(self) -> str:
        return f"ProfileFile({str(self.path)!r})"

    def load(self) -> Records:
        """The records by id; ``{}`` when there is no file.

        Raises:
            palyra.AuthProfileError: The file is damaged (it is moved aside),
                written by a newer palyra, or cannot be read.
        """
        found = self._read()
        if isinstance(found, _Damage):
            # Moved aside under the lock only: another process may be
            # rewriting it right now, or moving it aside itself.
            with self._held(self._lock_path, None):
                return self._read_locked()
        return found

    def update(self, change: Callable[[Records], T]) -> T:
        """Apply ``change`` to fresh records under the lock, and save them.

        ``change`` gets the records by id, may change them in place, and its
        result is returned. The file is replaced atomically, only if the
        records changed; if ``change`` raises, nothing is written.

        Raises:
            palyra.AuthProfileError: The file is damaged (it is moved aside),
                written by a newer palyra, locked too long by another
                process, or cannot be read or written.
            ValueError: ``change`` left a record that is not keyed by its id.
        """
        with self._held(self._lock_path, None):
            records = self._read_locked()
            before = _fingerprint(records)
            result = change(records)
            if _fingerprint(self._checked(records)) != before:
                self._write(_encode(records))
            return result

    def _held(self, path: Path, timeout: float | None) -> AbstractContextManager[None]:
        return hold(path, self.lock_timeout if timeout is None else timeout)

    @contextmanager
    def lock(self, name: str, timeout: float | None = None) -> Iterator[None]:
        """Hold the named lock ``<home>/locks/<name>.lock`` across processes.

        Args:
            name: 1 to 128 of ``a-z 0-9 . _ -``.
            timeout: Seconds to wait; ``lock_timeout`` when None.

        Raises:
            ValueError: The name is not allowed.
            palyra.AuthProfileError: Another process held it past ``timeout``.
        """
        if not isinstance(name, str) or not _LOCK_NAME.fullmatch(name):
            raise ValueError(f"a lock name is 1-128 of [a-z0-9._-], not {name!r}")
        with self._held(self.home / "locks" / f"{name}.lock", timeout):
            yield

    # Reading

    def _read(self) -> Records | _Damage:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise file_error(
                "cannot read the auth profile file", self.path, exc
            ) from None
        return self._parse(data)

    def _read_locked(self) -> Records:
        """Read with the profile lock held: a damaged file is moved aside."""
        found = self._read()
        if isinstance(found, _Damage):
            damaged = f"the auth profile file {self.path} is damaged ({found.reason})"
            kept = self._set_aside(damaged)
            raise AuthProfileError(
                f"{damaged}; it was kept as {kept}, and {_AFTER_DAMAGE}"
            )
        self._tighten()
        return found

    def _parse(self, data: bytes) -> Records | _Damage:
        document = _decode(data)
        if isinstance(document, _Damage):
            return document
        if not isinstance(document, dict):
            return _Damage(f"the top level is {_kind(document)}, not an object")
        if "version" not in document:
            return _Damage("'version' is missing")
        version = document["version"]
        if not isinstance(version, int) or isinstance(version, bool):
            return _Damage(f"'version' is {_kind(version)}, not an integer")
        if version > VERSION:
            raise AuthProfileError(
                f"the auth profile file {self.path} was written by a newer palyra"
                f" (version {version}; this one knows version {VERSION}):"
                " upgrade palyra to use it; the file is left as it is"
            )
        if version < 1:
            return _Damage(f"'version' is {version}, which no palyra writes")
        return self._records(document.get("profiles"), "profiles" in document)

    def _records(self, profiles: object, present: bool) -> Records | _Damage:
        if not present:
            return _Damage("'profiles' is missing")
        if not isinstance(profiles, list):
            return _Damage(f"'profiles' is {_kind(profiles)}, not a list")
        records: Records = {}
        where: dict[str, int] = {}
        for index, record in enumerate(profiles):
            problem = self._problem(record)
            if problem is None and record["id"] in where:
                problem = f"the same id as profiles[{where[record['id']]}]"
            if problem is not None:
                return _Damage(f"profiles[{index}]: {problem}")
            where[record["id"]] = index
            records[record["id"]] = record
        return records

    def _problem(self, record: object) -> str | None:
        """What is wrong with one record, without saying any of its values."""
        if not isinstance(record, dict):
            return f"{_kind(record)}, not an object"
        if "id" not in record:
            return "missing 'id'"
        if not isinstance(record["id"], str):
            return f"'id' is {_kind(record['id'])}, not a string"
        if not record["id"]:
            return "'id' is empty"
        if self._validate is not None:
            try:
                self._validate(record)
            except (ValueError, PalyraError) as exc:
                return f"rejected ({_rejection(exc)})"
        return None

    # Writing

    def _checked(self, records: Records) -> Records:
        """Refuse, before writing, what the next read would call damaged."""
        for key, record in records.items():
            if not isinstance(record, dict) or record.get("id") != key or not key:
                raise ValueError(
                    f"auth profile records are keyed by their own non-empty 'id';"
                    f" the one under {key!r} is not"
                )
            if self._validate is not None:
                self._validate(record)
        return records

    def _write(self, data: bytes) -> None:
        """Replace the file with ``data``: whole or not at all."""
        private_directory(self.home)
        # Same directory, so the rename is atomic; pid and random: unique.
        name = f".{PROFILES_FILE}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        temp = self.home / name
        replaced = False
        try:
            _write_new_file(temp, data)
            os.replace(temp, self.path)
            replaced = True
        except OSError as exc:
            raise file_error(
                "cannot write the auth profile file", self.path, exc
            ) from None
        finally:
            if not replaced:
                with suppress(OSError):
                    os.unlink(temp)
        _sync_directory(self.home)

    def _tighten(self) -> None:
        """Make an existing file that others may read private again."""
        if sys.platform == "win32":
            return  # no POSIX mode bits; the user's profile directory is private
        try:
            if os.stat(self.path).st_mode & 0o077:
                os.chmod(self.path, 0o600)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise file_error("cannot make private", self.path, exc) from None

    def _set_aside(self, damaged: str) -> Path:
        """Rename the damaged file to a name no earlier copy has."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        base = f"{PROFILES_FILE}.damaged-{stamp}"
        kept = self.home / base
        # Checking then renaming is safe: every mover holds the profile lock.
        for n in itertools.count(1):
            if not os.path.lexists(kept):
                break
            kept = self.home / f"{base}-{n}"
        try:
            os.rename(self.path, kept)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise AuthProfileError(
                f"{damaged}, and it cannot be moved aside to {kept}: {reason}"
            ) from None
        return kept


# Files


def _write_new_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | O_BINARY, 0o600)
    with open(fd, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def _sync_directory(path: Path) -> None:
    """Make the rename durable (POSIX); the file itself is already whole."""
    if sys.platform == "win32":
        return  # directories cannot be opened for fsync there
    # After the rename the new file is in place; a filesystem that cannot
    # sync a directory must not turn a done write into a reported failure.
    with suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fingerprint(records: Records) -> str:
    """The records, compactly: what tells a change (json's C encoder, unlike
    the pretty one, which is pure Python and several times slower)."""
    return json.dumps(records)


def _encode(records: Records) -> bytes:
    document = {"version": VERSION, "profiles": [records[k] for k in sorted(records)]}
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode()


def _decode(data: bytes) -> Any:
    """The JSON document in ``data``, or a `_Damage` saying where it breaks."""
    try:
        # utf-8-sig: a byte-order mark from a Windows editor is not damage.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return _Damage(f"byte {exc.start}: not UTF-8 ({exc.reason})")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        # The message alone: the exception holds the whole document. Some
        # messages quote a character after a colon; that part is dropped.
        message = exc.msg.split(":")[0]
        return _Damage(f"line {exc.lineno}, column {exc.colno}: {message}")


def _kind(value: object) -> str:
    """A JSON value's kind, for messages that must not show the value."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    names |= {int: "an integer", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _rejection(exc: Exception) -> str:
    """Where a validator rejected a record: field paths and error types
    (pydantic's ``errors()``), never the text, which may quote the input."""
    errors = getattr(exc, "errors", None)
    try:
        found = errors() if callable(errors) else []
        places = [
            f"{'.'.join(str(p) for p in error['loc']) or '(record)'}: {error['type']}"
            for error in found
        ]
    except Exception:
        places = []
    return "; ".join(places[:5]) if places else type(exc).__name__
