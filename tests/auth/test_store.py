"""The profile file: where palyra's home is, the file's format and modes,
atomic and locked updates across threads and processes, and damaged files
moved aside without a value of theirs reaching a message."""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pydantic
import pytest

import palyra
from palyra._auth import locks
from palyra._auth.store import PROFILES_FILE, VERSION, ProfileFile, default_home

ROOT = Path(__file__).resolve().parents[2]
SECRET = "sk-DAMAGED-SECRET-123456"
POSIX_ONLY = pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
KEPT = re.compile(re.escape(PROFILES_FILE) + r"\.damaged-\d{8}T\d{6}Z(-\d+)?")


@pytest.fixture(name="home")
def home_fixture(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture(name="store")
def store_fixture(home: Path) -> ProfileFile:
    return ProfileFile(home, lock_timeout=5.0)


def _add(*ids: str) -> Any:
    def change(records: dict[str, dict[str, Any]]) -> int:
        for id_ in ids:
            records[id_] = {"id": id_, "provider": "openai"}
        return len(records)

    return change


def _strays(home: Path) -> list[str]:
    """Files in home beyond the profile file and its lock."""
    return sorted(
        p.name
        for p in home.iterdir()
        if p.name not in (PROFILES_FILE, f"{PROFILES_FILE}.lock", "locks")
    )


def _python(code: str, *args: str, **kw: Any) -> subprocess.Popen[str]:
    """A Python process importing this checkout's palyra."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], cwd=ROOT, env=env, text=True, **kw
    )


# default_home


@pytest.mark.parametrize(
    ("home", "environ", "platform", "expected"),
    [
        pytest.param("/given", {"PALYRA_HOME": "/env"}, "linux", "/given", id="arg"),
        pytest.param(
            None,
            {"PALYRA_HOME": "/env", "XDG_CONFIG_HOME": "/xdg"},
            "linux",
            "/env",
            id="PALYRA_HOME",
        ),
        pytest.param(
            None,
            {"XDG_CONFIG_HOME": "/xdg", "HOME": "/u"},
            "linux",
            "/xdg/palyra",
            id="XDG_CONFIG_HOME",
        ),
        pytest.param(None, {"HOME": "/u"}, "linux", "/u/.config/palyra", id="linux"),
        pytest.param(
            None,
            {"XDG_CONFIG_HOME": "relative", "HOME": "/u"},
            "linux",
            "/u/.config/palyra",
            id="relative-xdg-ignored",
        ),
        pytest.param(
            None, {"HOME": "/u"}, "freebsd14", "/u/.config/palyra", id="other"
        ),
        pytest.param(
            None,
            {"HOME": "/u", "XDG_CONFIG_HOME": "/xdg"},
            "darwin",
            "/u/Library/Application Support/palyra",
            id="darwin",
        ),
        pytest.param(
            None,
            {"APPDATA": "/roaming", "USERPROFILE": "/w"},
            "win32",
            "/roaming/palyra",
            id="win32",
        ),
        pytest.param(
            None,
            {"USERPROFILE": "/w", "HOME": "/u"},
            "win32",
            "/w/AppData/Roaming/palyra",
            id="win32-no-APPDATA",
        ),
        pytest.param("~/p", {"HOME": "/u"}, "linux", "/u/p", id="tilde-arg"),
        pytest.param(
            None, {"PALYRA_HOME": "~", "HOME": "/u"}, "linux", "/u", id="tilde-env"
        ),
        pytest.param(
            None,
            {"PALYRA_HOME": "", "HOME": "/u"},
            "linux",
            "/u/.config/palyra",
            id="empty-PALYRA_HOME",
        ),
    ],
)
def test_default_home(
    home: str | None, environ: dict[str, str], platform: str, expected: str
) -> None:
    """An argument, then PALYRA_HOME, then the platform's user config dir."""
    found = default_home(home, environ=environ, platform=platform)
    assert found == Path(expected).absolute()
    assert found.is_absolute()


def test_default_home_is_absolute_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative home is made absolute; no directory appears."""
    monkeypatch.chdir(tmp_path)
    assert default_home("rel", environ={}) == tmp_path / "rel"
    assert default_home(environ={"HOME": str(tmp_path)}, platform="linux") == (
        tmp_path / ".config" / "palyra"
    )
    assert list(tmp_path.iterdir()) == []


def test_construction_and_reading_nothing_do_no_io(home: Path) -> None:
    """__init__ touches nothing, and load() of a missing file creates nothing."""
    store = ProfileFile(home / "deeper")
    assert store.path == home / "deeper" / PROFILES_FILE
    assert not home.exists()
    assert store.load() == {}
    assert not home.exists()


# The file


def test_round_trip_sorted_and_versioned(store: ProfileFile) -> None:
    """Records come back by id; the file is sorted, pretty, versioned."""
    assert store.update(_add("b", "a")) == 2
    assert store.update(_add("c")) == 3
    assert list(store.load()) == ["a", "b", "c"]
    assert store.load()["b"] == {"id": "b", "provider": "openai"}
    text = store.path.read_bytes().decode("utf-8")
    records = [{"id": i, "provider": "openai"} for i in "abc"]
    expected = {"version": VERSION, "profiles": records}
    assert text == json.dumps(expected, indent=2) + "\n"


def test_non_ascii_is_written_as_utf8(store: ProfileFile) -> None:
    """Names keep their characters, in UTF-8."""
    store.update(lambda r: r.update(a={"id": "a", "name": "Zoë"}))
    assert "Zoë" in store.path.read_text(encoding="utf-8")
    assert store.load()["a"]["name"] == "Zoë"


def test_unchanged_records_are_not_rewritten(store: ProfileFile) -> None:
    """An update that changes nothing leaves the very same file in place."""
    store.update(_add("a"))
    before = store.path.stat()
    assert store.update(lambda records: sorted(records)) == ["a"]
    after = store.path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_nested_changes_in_place_are_written(store: ProfileFile) -> None:
    """Mutating a record in place counts as a change."""
    store.update(lambda r: r.update(a={"id": "a", "tags": []}))
    store.update(lambda r: r["a"]["tags"].append("x"))
    assert store.load()["a"]["tags"] == ["x"]


def test_a_byte_order_mark_is_not_damage(store: ProfileFile, home: Path) -> None:
    """A file saved by an editor that adds a BOM still reads."""
    home.mkdir()
    body = json.dumps({"version": 1, "profiles": [{"id": "a"}]})
    store.path.write_bytes(b"\xef\xbb\xbf" + body.encode())
    assert store.load() == {"a": {"id": "a"}}


@POSIX_ONLY
def test_modes_are_private(store: ProfileFile, home: Path) -> None:
    """The file is 0600; home and home/locks are created 0700."""
    store.update(_add("a"))
    with store.lock("x"):
        pass
    assert store.path.stat().st_mode & 0o777 == 0o600
    assert home.stat().st_mode & 0o777 == 0o700
    assert (home / "locks").stat().st_mode & 0o777 == 0o700
    assert (home / "locks" / "x.lock").stat().st_mode & 0o777 == 0o600


@POSIX_ONLY
@pytest.mark.parametrize("change", [_add("b"), lambda records: None])
def test_a_wider_file_is_made_private(
    store: ProfileFile, home: Path, change: Any
) -> None:
    """A file others may read becomes 0600 on update, changed or not."""
    home.mkdir()
    store.path.write_text(json.dumps({"version": 1, "profiles": [{"id": "a"}]}))
    store.path.chmod(0o644)
    store.update(change)
    assert store.path.stat().st_mode & 0o777 == 0o600
    assert "a" in store.load()


def test_change_raising_writes_nothing(store: ProfileFile, home: Path) -> None:
    """If change raises, the file is as it was and no temp file remains."""
    store.update(_add("a"))
    before = store.path.read_bytes()

    def change(records: dict[str, dict[str, Any]]) -> None:
        records.clear()
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        store.update(change)
    assert store.path.read_bytes() == before
    assert _strays(home) == []


@pytest.mark.parametrize(
    "records",
    [{"a": {"id": "b"}}, {"a": ["not", "a", "record"]}, {"": {"id": ""}}],
    ids=["wrong-id", "not-a-dict", "empty-id"],
)
def test_records_not_keyed_by_their_id_are_refused(
    store: ProfileFile, records: dict[str, Any]
) -> None:
    """What the next read would call damaged is never written."""
    store.update(_add("x"))
    before = store.path.read_bytes()
    with pytest.raises(ValueError, match="keyed by their own"):
        store.update(lambda r: r.update(records))
    assert store.path.read_bytes() == before


def test_validate_applies_to_writes(home: Path) -> None:
    """A record the validator rejects is not written; its error propagates."""
    store = ProfileFile(home, validate=_Profile.model_validate)
    store.update(lambda r: r.update(a={"id": "a"}))
    with pytest.raises(pydantic.ValidationError):
        store.update(lambda r: r.update(b={"id": "b", "api_key": "x"}))
    assert list(store.load()) == ["a"]


@pytest.mark.parametrize("failing", ["replace", "fsync", "write"])
def test_a_failed_write_leaves_the_old_file(
    store: ProfileFile, home: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    """A failure between writing and renaming keeps the old file whole and
    removes the temp file; the error names the path and the OS's reason."""
    store.update(_add("a"))
    before = store.path.read_bytes()

    def boom(*args: object, **kw: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    if failing == "write":
        monkeypatch.setattr(
            "palyra._auth.store._write_new_file",
            lambda path, data: (path.write_bytes(data[:10]), boom()),
        )
    else:
        monkeypatch.setattr(os, failing, boom)
    with pytest.raises(palyra.AuthProfileError) as caught:
        store.update(_add("b"))
    monkeypatch.undo()
    assert str(store.path) in str(caught.value)
    assert os.strerror(errno.ENOSPC) in str(caught.value)
    assert store.path.read_bytes() == before
    assert _strays(home) == []


def test_an_unreadable_file_is_an_auth_profile_error(store: ProfileFile) -> None:
    """A path that cannot be read names the path and the OS's reason."""
    store.path.mkdir(parents=True)  # root ignores modes; a directory fails all
    with pytest.raises(palyra.AuthProfileError, match="cannot read") as caught:
        store.load()
    assert str(store.path) in str(caught.value)
    assert os.strerror(errno.EISDIR) in str(caught.value)


def test_an_unwritable_home_is_an_auth_profile_error(
    store: ProfileFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No directory can be made: the error names it, nothing is left."""

    def refuse(*args: object, **kw: object) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(palyra.AuthProfileError, match="lock file") as caught:
        store.update(_add("a"))
    assert os.strerror(errno.EACCES) in str(caught.value)
    assert str(store.home) in str(caught.value)


# Damaged files


class _Profile(pydantic.BaseModel):
    """A strict record schema, as the profile layer will have."""

    model_config = pydantic.ConfigDict(extra="forbid")
    id: str
    provider: str = "openai"


def _rejects_all(record: dict[str, Any]) -> None:
    raise ValueError(f"bad record {record!r}")


def _palyra_rejects(record: dict[str, Any]) -> None:
    raise palyra.ConfigError([("x", repr(record))])


def _doc(*profiles: object, version: object = 1) -> bytes:
    return json.dumps({"version": version, "profiles": list(profiles)}).encode()


_ONE = {"id": "a", "api_key": SECRET}
_NOT_UTF8 = b'{"version": 1, "profiles": [{"id": "' + SECRET.encode() + b'\xff"}]}'
_NOT_JSON = '{\n  "version": 1,\n  "profiles": [{"id": "a" "k": "SECRET"}]\n}'.replace(
    "SECRET", SECRET
)
_TOP = {"version": 1, "api_key": SECRET}


def _damaged(
    data: bytes, reason: str, id: str, validate: Any = None
) -> Any:  # a pytest.param
    return pytest.param(data, validate, reason, id=id)


DAMAGED = [
    _damaged(_NOT_UTF8, "byte 60: not UTF-8 (invalid start byte)", "not-utf8"),
    _damaged(_NOT_JSON.encode(), "line 3, column 27: Expecting ',' delimiter", "json"),
    _damaged(json.dumps([_ONE]).encode(), "top level is a list", "list"),
    _damaged(json.dumps({"profiles": []}).encode(), "'version' is missing", "no-v"),
    _damaged(_doc(_ONE, version=SECRET), "'version' is a string", "version-str"),
    _damaged(_doc(_ONE, version=True), "'version' is a boolean", "version-bool"),
    _damaged(_doc(_ONE, version=0), "'version' is 0", "version-0"),
    _damaged(json.dumps(_TOP).encode(), "'profiles' is missing", "no-profiles"),
    _damaged(
        json.dumps({**_TOP, "profiles": {"a": SECRET}}).encode(),
        "'profiles' is an object, not a list",
        "profiles-object",
    ),
    _damaged(_doc(SECRET), "profiles[0]: a string, not an object", "record-str"),
    _damaged(
        _doc({"id": "a"}, {"id": "b"}, {"api_key": SECRET}),
        "profiles[2]: missing 'id'",
        "no-id",
    ),
    _damaged(
        _doc({"id": 7, "api_key": SECRET}),
        "profiles[0]: 'id' is an integer, not a string",
        "id-int",
    ),
    _damaged(_doc({"id": "", "k": SECRET}), "profiles[0]: 'id' is empty", "id-empty"),
    _damaged(
        _doc({"id": SECRET}, {"id": "b"}, {"id": SECRET}),
        "profiles[2]: the same id as profiles[0]",
        "duplicate",
    ),
    _damaged(
        _doc(_ONE),
        "profiles[0]: rejected (api_key: extra_forbidden)",
        "pydantic",
        _Profile.model_validate,
    ),
    _damaged(
        _doc(_ONE), "profiles[0]: rejected (ValueError)", "ValueError", _rejects_all
    ),
    _damaged(
        _doc(_ONE),
        "profiles[0]: rejected (ConfigError)",
        "PalyraError",
        _palyra_rejects,
    ),
]


def _use(store: ProfileFile, how: str) -> Any:
    """Read the file (load) or change it (update, adding a record)."""
    return store.load() if how == "load" else store.update(_add("new"))


def _check_damage_error(
    exc: palyra.AuthProfileError, store: ProfileFile, data: bytes, reason: str
) -> Path:
    """The error says the file, the problem and the copy, and nothing secret;
    the copy holds the very bytes; returns the copy's path."""
    message = str(exc)
    kept = [p for p in store.home.iterdir() if KEPT.fullmatch(p.name)]
    assert len(kept) == 1
    assert kept[0].read_bytes() == data
    assert not store.path.exists()
    assert str(store.path) in message
    assert reason in message
    assert str(kept[0]) in message
    assert "new, empty" in message
    assert "vault" in message
    assert exc.__cause__ is None
    assert exc.__context__ is None
    whole = "".join(traceback.format_exception(exc)) + repr(exc)
    assert SECRET not in whole
    return kept[0]


@pytest.mark.parametrize(("data", "validate", "reason"), DAMAGED)
@pytest.mark.parametrize("how", ["load", "update"])
def test_a_damaged_file_is_kept_aside(
    home: Path, data: bytes, validate: Any, reason: str, how: str
) -> None:
    """Every kind of damage: refused, moved aside whole, said without values."""
    store = ProfileFile(home, validate=validate)
    home.mkdir()
    store.path.write_bytes(data)
    with pytest.raises(palyra.AuthProfileError) as caught:
        _use(store, how)
    _check_damage_error(caught.value, store, data, reason)
    assert store.load() == {}  # a new, empty file from here on
    ProfileFile(home).update(_add("fresh"))
    assert list(ProfileFile(home).load()) == ["fresh"]


def test_a_second_damaged_file_gets_its_own_name(store: ProfileFile) -> None:
    """An earlier damaged copy is never overwritten."""
    store.home.mkdir()
    copies = []
    for n in range(3):
        data = b"{not json %d" % n
        store.path.write_bytes(data)
        with pytest.raises(palyra.AuthProfileError) as caught:
            store.load()
        kept = re.search(r"kept as (\S+), and", str(caught.value))
        assert kept is not None
        copies.append(Path(kept.group(1)))
        assert copies[-1].read_bytes() == data
    assert len(set(copies)) == 3
    assert all(KEPT.fullmatch(p.name) for p in copies)


def test_a_file_repaired_meanwhile_is_not_moved(store: ProfileFile) -> None:
    """load() moves a damaged file only if it is still damaged under the lock."""
    store.home.mkdir()
    store.path.write_bytes(b"{damaged")
    result: list[Any] = []
    with locks.hold(store.home / f"{PROFILES_FILE}.lock", 5.0):
        reader = threading.Thread(target=lambda: result.append(store.load()))
        reader.start()
        time.sleep(0.1)  # the reader saw the damage and waits for the lock
        store.path.write_bytes(_doc({"id": "a"}))  # a writer repaired it
    reader.join(5)
    assert result == [{"a": {"id": "a"}}]
    assert _strays(store.home) == []


@pytest.mark.parametrize("how", ["load", "update"])
def test_a_newer_version_is_refused_and_left_alone(
    store: ProfileFile, how: str
) -> None:
    """A file from a newer palyra is neither moved nor overwritten."""
    store.home.mkdir()
    data = _doc({"id": "a", "new-field": {"x": 1}}, version=VERSION + 1)
    store.path.write_bytes(data)
    with pytest.raises(palyra.AuthProfileError, match="newer palyra") as caught:
        _use(store, how)
    assert f"version {VERSION + 1}" in str(caught.value)
    assert str(store.path) in str(caught.value)
    assert store.path.read_bytes() == data
    assert _strays(store.home) == []


# Locks


_HOLD = """
import sys
from pathlib import Path
from palyra._auth.store import ProfileFile
store = ProfileFile(Path(sys.argv[1]))
def held(records):
    print("held", flush=True)
    sys.stdin.readline()
if sys.argv[2] == "profiles":
    store.update(held)
else:
    with store.lock(sys.argv[2]):
        held({})
"""


@contextmanager
def _held_elsewhere(home: Path, name: str) -> Iterator[None]:
    """Another process holds the lock ``name`` ("profiles": the file's own)."""
    holder = _python(
        _HOLD, str(home), name, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert holder.stdout is not None
    assert holder.stdin is not None
    try:
        assert holder.stdout.readline() == "held\n"
        yield
    finally:
        holder.stdin.close()
        holder.stdout.close()
        assert holder.wait(10) == 0


def _lock_briefly(store: ProfileFile, name: str) -> None:
    """Take the lock ``name`` ("profiles": by updating), waiting 0.2 s."""
    if name == "profiles":
        ProfileFile(store.home, lock_timeout=0.2).update(_add("a"))
        return
    with store.lock(name, timeout=0.2):
        pass


@pytest.mark.parametrize(
    ("name", "lock_file"),
    [
        ("profiles", f"{PROFILES_FILE}.lock"),
        ("refresh.openai", "locks/refresh.openai.lock"),
    ],
)
def test_a_lock_held_by_another_process_times_out(
    store: ProfileFile, name: str, lock_file: str
) -> None:
    """The wait ends after the timeout, naming the lock file and the holder."""
    with _held_elsewhere(store.home, name):
        started = time.monotonic()
        with pytest.raises(palyra.AuthProfileError) as caught:
            _lock_briefly(store, name)
        waited = time.monotonic() - started
    assert 0.2 <= waited < 2
    message = str(caught.value)
    assert str(store.home / lock_file) in message
    assert "another palyra process holds it" in message
    assert "0.2 s" in message
    # Released: the lock is free again, and its file stays.
    with store.lock("refresh.openai", timeout=1), store.lock("other"):
        store.update(_add("a"))
    assert (store.home / lock_file).exists()


def test_a_lock_held_by_another_thread_times_out(store: ProfileFile) -> None:
    """Threads of one process queue on an in-process lock, with the timeout."""
    holding, done = threading.Event(), threading.Event()

    def hold() -> None:
        with store.lock("refresh.x"):
            holding.set()
            done.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        holding.wait(5)
        with (
            pytest.raises(palyra.AuthProfileError, match="another thread") as caught,
            store.lock("refresh.x", timeout=0.05),
        ):
            pass
        assert str(store.home / "locks" / "refresh.x.lock") in str(caught.value)
        with store.lock("refresh.y", timeout=0.05):
            pass  # other names are not held
    finally:
        done.set()
        holder.join(5)


@pytest.mark.parametrize(
    "name", ["", "Upper", "a/b", "../x", "a b", "x" * 129, "é", 5], ids=repr
)
def test_lock_names_are_checked(store: ProfileFile, name: Any) -> None:
    """A lock name is a plain file name of [a-z0-9._-]; nothing is created."""
    with pytest.raises(ValueError, match="lock name"), store.lock(name):
        pass
    assert not store.home.exists()


# Many writers at once


def test_threads_lose_no_update(store: ProfileFile) -> None:
    """16 threads x 20 updates: all 320 records are there."""
    barrier = threading.Barrier(16)

    def work(t: int) -> None:
        barrier.wait()
        for i in range(20):
            store.update(_add(f"t{t:02}-{i:02}"))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(store.load()) == 320


_WRITER = """
import sys
from pathlib import Path
from palyra._auth.store import ProfileFile
store = ProfileFile(Path(sys.argv[1]))
sys.stdin.readline()  # start together
for i in range(25):
    key = f"p{sys.argv[2]}-{i:02}"
    store.update(lambda records: records.update({key: {"id": key}}))
"""


def test_processes_lose_no_update(store: ProfileFile) -> None:
    """4 processes x 25 updates: all 100 records are there, the file valid."""
    writers = [_python(_WRITER, str(store.home), str(n), stdin=subprocess.PIPE)
               for n in range(4)]  # fmt: skip
    for writer in writers:
        assert writer.stdin is not None
        writer.stdin.write("go\n")
        writer.stdin.close()
    assert [writer.wait(30) for writer in writers] == [0] * 4
    records = store.load()
    assert len(records) == 100
    assert sorted(records) == [f"p{n}-{i:02}" for n in range(4) for i in range(25)]
    assert _strays(store.home) == []
