"""The vault's contract, against every store: memory, the real keyring library
with an in-process backend, and the Linux Secret Service where one runs."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import keyring
import keyring.backend
import keyring.errors
import pytest

import palyra
from palyra._auth.vault import secret_key

SECRET = "sk-vaultTEST-0123456789abcdef"


class ProcessKeyring(keyring.backend.KeyringBackend):
    """A keyring backend of this process: the library's own API, no D-Bus."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.items[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.items.pop((service, username), None) is None:
            raise keyring.errors.PasswordDeleteError("not found")


class LockedKeyring(ProcessKeyring):
    """A backend that refuses everything, as a locked collection does."""

    def get_password(self, service: str, username: str) -> str | None:
        raise keyring.errors.KeyringLocked(f"locked while reading {username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        raise keyring.errors.KeyringLocked(f"locked, could not store {password}")


@pytest.fixture
def backend() -> Iterator[ProcessKeyring]:
    previous = keyring.get_keyring()
    ours = ProcessKeyring()
    keyring.set_keyring(ours)
    yield ours
    keyring.set_keyring(previous)


def _secret_service() -> Any:
    """The real Secret Service backend, if one answers here."""
    try:
        from keyring.backends import SecretService

        store = SecretService.Keyring()
        store.set_password("palyra-test", "probe", "probe")
        store.delete_password("palyra-test", "probe")
    except Exception as exc:  # no D-Bus session, no daemon, a locked keyring
        pytest.skip(f"no Secret Service can be used here ({type(exc).__name__})")
    return store


@pytest.fixture(params=["memory", "keyring", "secret-service"])
def store(request: pytest.FixtureRequest) -> Iterator[palyra.SecretStore]:
    if request.param == "memory":
        yield palyra.MemorySecretStore()
        return
    previous = keyring.get_keyring()
    real = ProcessKeyring() if request.param == "keyring" else _secret_service()
    keyring.set_keyring(real)
    try:
        yield palyra.KeyringSecretStore(service="palyra-test")
    finally:
        for name in ("a:api_key", "b:access_token", "big:refresh_token"):
            palyra.KeyringSecretStore(service="palyra-test").delete(name)
        keyring.set_keyring(previous)


def test_set_get_overwrite_delete(store: palyra.SecretStore) -> None:
    assert isinstance(store, palyra.SecretStore)
    assert store.get("a:api_key") is None
    store.set("a:api_key", SECRET)
    assert store.get("a:api_key") == SECRET
    store.set("a:api_key", SECRET + "2")
    assert store.get("a:api_key") == SECRET + "2"
    assert store.delete("a:api_key") is True
    assert store.get("a:api_key") is None
    assert store.delete("a:api_key") is False  # a missing secret: no error


def test_unicode_and_8_kb_tokens(store: palyra.SecretStore) -> None:
    store.set("b:access_token", "clé-秘密-🔑")
    assert store.get("b:access_token") == "clé-秘密-🔑"
    token = "eyJ" + "x" * 8189
    store.set("big:refresh_token", token)
    assert store.get("big:refresh_token") == token


def test_keys_are_profile_and_field() -> None:
    assert secret_key("openai-main", "api_key") == "openai-main:api_key"


def test_the_keyring_store_files_under_the_palyra_service(
    backend: ProcessKeyring,
) -> None:
    palyra.KeyringSecretStore().set(secret_key("p", "api_key"), SECRET)
    assert backend.items == {("palyra", "p:api_key"): SECRET}


def test_building_a_store_touches_no_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> None:
        raise AssertionError("the keyring was asked")

    monkeypatch.setattr(keyring, "get_keyring", refuse)
    monkeypatch.setattr(keyring, "get_password", refuse)
    assert repr(palyra.KeyringSecretStore()) == "KeyringSecretStore(service='palyra')"


@pytest.mark.parametrize("action", ["get", "set", "delete"])
def test_a_locked_keyring_is_a_vault_error_naming_the_backend(action: str) -> None:
    previous = keyring.get_keyring()
    keyring.set_keyring(LockedKeyring())
    try:
        store = palyra.KeyringSecretStore()
        args = ("p:api_key", SECRET) if action == "set" else ("p:api_key",)
        with pytest.raises(palyra.VaultError) as info:
            getattr(store, action)(*args)
    finally:
        keyring.set_keyring(previous)
    error = info.value
    assert isinstance(error, palyra.CredentialError)
    assert "LockedKeyring" in str(error)
    assert "KeyringLocked" in str(error)
    assert "Secret Service" in str(error)  # says how to fix it
    assert SECRET not in str(error) + repr(error)
    assert error.__cause__ is None  # the backend's text may carry arguments


def test_no_backend_is_a_vault_error_not_plain_text() -> None:
    from keyring.backends import fail

    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        with pytest.raises(palyra.VaultError, match=r"fail\.Keyring"):
            palyra.KeyringSecretStore().set("p:api_key", SECRET)
    finally:
        keyring.set_keyring(previous)


def test_the_memory_store_under_many_threads() -> None:
    store = palyra.MemorySecretStore()

    def work(n: int) -> None:
        for i in range(200):
            store.set(f"p{n}:k{i}", f"s{n}-{i}")
            assert store.get(f"p{n}:k{i}") == f"s{n}-{i}"
            if i % 2:
                assert store.delete(f"p{n}:k{i}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.get("p3:k10") == "s3-10"
    assert store.get("p3:k11") is None
    assert SECRET not in repr(store)


def test_bad_keys_and_secrets_are_type_errors() -> None:
    store = palyra.MemorySecretStore()
    with pytest.raises(TypeError):
        store.set("", SECRET)
    with pytest.raises(TypeError):
        store.set("p:api_key", 5)  # type: ignore[arg-type]
