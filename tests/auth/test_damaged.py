"""A damaged profile file, met through the client: a typed error naming the
file and where the damaged copy was kept; it is never overwritten blindly."""

from __future__ import annotations

from pathlib import Path

import pytest

import palyra

BROKEN = (
    b'{"version": 1, "profiles": [{"id": "a", "api_key": "sk-PASTED-BY-HAND-123456"'
)
CONFIG = {
    "providers": [{"id": "up", "kind": "openai", "base_url": "http://127.0.0.1:9/v1"}],
    "models": [{"id": "m", "provider": "up"}],
}


@pytest.mark.parametrize("action", ["list", "connect", "chat"])
def test_a_damaged_file_is_kept_aside_and_reported(action: str, tmp_path: Path) -> None:
    (tmp_path / "auth_profiles.json").write_bytes(BROKEN)
    client = palyra.Palyra(CONFIG, secrets=palyra.MemorySecretStore(), home=tmp_path)
    use = {
        "list": client.auth.list,
        "connect": lambda: client.auth.connect_api_key(
            "up", "sk-new-key-0123456789", validate=False
        ),
        "chat": lambda: client.chat([{"role": "user", "content": "hi"}]),
    }[action]
    with pytest.raises(palyra.CredentialError) as info:
        use()
    kept = list(tmp_path.glob("auth_profiles.json.damaged-*"))
    assert len(kept) == 1
    assert kept[0].read_bytes() == BROKEN
    message = str(info.value)
    assert "auth_profiles.json" in message
    assert kept[0].name in message
    assert "sk-PASTED" not in message
    # reported once; palyra then starts a new file and the next use works
    assert client.auth.list() == []
    client.close()


def test_a_newer_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    newer = b'{"version": 99, "profiles": []}'
    (tmp_path / "auth_profiles.json").write_bytes(newer)
    client = palyra.Palyra(CONFIG, secrets=palyra.MemorySecretStore(), home=tmp_path)
    with pytest.raises(palyra.AuthProfileError, match="newer"):
        client.auth.connect_api_key("up", "sk-new-key-0123456789", validate=False)
    assert (tmp_path / "auth_profiles.json").read_bytes() == newer
    assert list(tmp_path.glob("*.damaged-*")) == []
