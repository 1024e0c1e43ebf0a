"""Configuration: shapes accepted, defaults, and errors that name their path."""

from __future__ import annotations

import warnings
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import palyra
from palyra import ConfigError, InsecureConfigWarning, PalyraConfig


def _config(**overrides: Any) -> dict[str, Any]:
    provider = {"id": "openai", "kind": "openai", "api_key_env": "OPENAI_API_KEY"}
    data: dict[str, Any] = {
        "providers": [provider],
        "models": [{"id": "gpt-4o-mini", "provider": "openai"}],
    }
    data.update(overrides)
    return data


def _error(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        PalyraConfig.from_dict(data)
    return str(info.value)


def test_empty_config_is_one_deterministic_provider() -> None:
    """No config at all gives a deterministic chat and embeddings model."""
    config = PalyraConfig()
    assert [p.kind for p in config.providers] == ["deterministic"]
    assert {m.role for m in config.models} == {"chat", "embeddings"}


def test_kind_alias_and_normalisation() -> None:
    """`openai` is an alias; ids are lower-cased; base URLs lose the trailing slash."""
    config = PalyraConfig.from_dict(
        _config(
            providers=[
                {
                    "id": " OpenAI ",
                    "kind": "openai",
                    "base_url": "https://api.example.com/v1/",
                    "api_key_env": "K",
                }
            ]
        )
    )
    provider = config.providers[0]
    assert provider.id == "openai"
    assert provider.kind == "openai_compatible"
    assert provider.base_url == "https://api.example.com/v1"
    assert provider.effective_auth_header == "bearer"


def test_default_base_url_per_kind() -> None:
    """Unset base URLs fall back to the kind's public API."""
    config = PalyraConfig.from_dict(_config())
    assert config.providers[0].effective_base_url == "https://api.openai.com/v1"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        pytest.param(
            "http://example.com", "http is only allowed for loopback", id="http"
        ),
        pytest.param("https://u:p@example.com", "user info", id="userinfo"),
        pytest.param("https://example.com/v1?x=1", "query string", id="query"),
        pytest.param("https://example.com/#f", "fragment", id="fragment"),
        pytest.param("ftp://example.com", "absolute http(s) URL", id="scheme"),
        pytest.param("/v1", "absolute http(s) URL", id="relative"),
    ],
)
def test_bad_base_url_names_its_path(url: str, message: str) -> None:
    """A bad base URL is reported at providers[i].base_url."""
    text = _error(
        _config(
            providers=[
                {"id": "a", "kind": "openai", "api_key_env": "K"},
                {"id": "b", "kind": "openai", "base_url": url, "api_key_env": "K"},
            ]
        )
    )
    assert "providers[1].base_url: " in text
    assert message in text


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://127.0.0.1:8000/v1", id="ipv4"),
        pytest.param("http://localhost:11434/v1", id="localhost"),
        pytest.param("http://[::1]:8080", id="ipv6"),
    ],
)
def test_http_to_loopback_is_allowed(url: str) -> None:
    """Plain http is fine for a server on this machine."""
    data = _config(providers=[{"id": "a", "kind": "openai", "base_url": url}])
    data["models"] = [{"id": "m", "provider": "a"}]
    assert PalyraConfig.from_dict(data).providers[0].base_url == url.rstrip("/")


def test_unknown_key_is_rejected_with_path() -> None:
    """Typos are errors, not silently ignored settings."""
    data = _config()
    data["models"][0]["contxt_window"] = 5
    assert "models[0].contxt_window: unknown key" in _error(data)


def test_unknown_top_level_key() -> None:
    """Unknown top-level keys are named too."""
    assert "provider: unknown key" in _error({**_config(), "provider": []})


def test_duplicate_ids_and_alias_collisions() -> None:
    """Provider ids, model ids and aliases must all be unique."""
    data = _config(
        providers=[
            {"id": "a", "kind": "openai", "api_key_env": "K"},
            {"id": "A", "kind": "openai", "api_key_env": "K"},
        ],
        models=[
            {"id": "m", "provider": "a"},
            {"id": "n", "provider": "a", "aliases": ["m"]},
        ],
    )
    text = _error(data)
    assert "providers[1].id: duplicate provider id 'a'" in text
    assert "models[1].aliases[0]: 'm' is already used by another model" in text


def test_model_with_unknown_provider() -> None:
    """A model must point at a configured provider."""
    data = _config(models=[{"id": "m", "provider": "nope"}])
    assert "models[0].provider: unknown provider 'nope'" in _error(data)


def test_defaults_must_exist_and_match_role() -> None:
    """defaults.<role> must name a model of that role."""
    data = _config(
        models=[
            {"id": "chat", "provider": "openai"},
            {"id": "emb", "provider": "openai", "role": "embeddings"},
        ],
        defaults={"chat": "emb", "embeddings": "missing"},
    )
    text = _error(data)
    assert "defaults.chat: model 'emb' has role 'embeddings'" in text
    assert "defaults.embeddings: unknown model 'missing'" in text


def test_models_without_providers_and_providers_without_models() -> None:
    """Half a registry is rejected."""
    assert "providers: at least one provider" in _error(
        {"models": [{"id": "m", "provider": "a"}]}
    )
    assert "models: at least one model is required" in _error(_config(models=[]))


def test_anthropic_cannot_serve_embeddings() -> None:
    """Roles a kind cannot serve are configuration errors."""
    data = _config(
        providers=[{"id": "claude", "kind": "anthropic", "api_key_env": "K"}],
        models=[{"id": "e", "provider": "claude", "role": "embeddings"}],
    )
    assert "models[0].role: anthropic providers serve no embeddings" in _error(data)


def test_credential_sources_combine_and_profile_ids_are_checked() -> None:
    """Sources may be combined (the order is in docs/auth.md); a profile id
    that could never exist is caught when the config is loaded."""
    PalyraConfig.from_dict(
        _config(
            providers=[
                {
                    "id": "a",
                    "kind": "openai",
                    "api_key_env": "K",
                    "auth_profile": "work",
                    "auth_order": ["Work", "spare"],
                }
            ],
            models=[{"id": "m", "provider": "a"}],
        )
    )
    data = _config(
        providers=[{"id": "a", "kind": "openai", "auth_order": ["ok", "not ok"]}],
        models=[{"id": "m", "provider": "a"}],
    )
    assert "providers[0]: auth_order: 'not ok' is not a profile id" in _error(data)
    data = _config(
        providers=[{"id": "a", "kind": "openai", "auth_profile": "team:x"}],
        models=[{"id": "m", "provider": "a"}],
    )
    assert "providers[0]: auth_profile: 'team:x' is not a profile id" in _error(data)


def test_api_key_env_must_be_a_name_not_a_key() -> None:
    """Pasting a key into api_key_env is caught, and the key is not echoed."""
    data = _config(
        providers=[{"id": "a", "kind": "openai", "api_key_env": "sk-abcdef123456"}],
        models=[{"id": "m", "provider": "a"}],
    )
    text = _error(data)
    assert "providers[0].api_key_env: must be an environment variable name" in text
    assert "sk-abcdef123456" not in text


def test_credential_headers_are_refused() -> None:
    """Secrets may not hide in plain extra headers."""
    data = _config(
        providers=[
            {
                "id": "a",
                "kind": "openai",
                "api_key_env": "K",
                "headers": {"Authorization": "Bearer x"},
            }
        ],
        models=[{"id": "m", "provider": "a"}],
    )
    assert "providers[0].headers: header 'Authorization' carries credentials" in (
        _error(data)
    )


def test_inline_api_key_warns_and_is_masked() -> None:
    """An inline key works but warns, and never shows in repr or dumps."""
    data = _config(
        providers=[{"id": "a", "kind": "openai", "api_key": "sk-inlineSECRET123"}],
        models=[{"id": "m", "provider": "a"}],
    )
    with pytest.warns(InsecureConfigWarning):
        config = PalyraConfig.from_dict(data)
    for text in (repr(config), str(config), config.model_dump_json()):
        assert "sk-inlineSECRET123" not in text
    assert "sk-inlineSECRET123" not in str(config.model_dump())


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        pytest.param("timeout", 0, "greater than 0", id="timeout"),
        pytest.param("max_retries", 11, "less than or equal to 10", id="retries"),
        pytest.param("circuit_breaker_threshold", 0, "greater than 0", id="breaker"),
        pytest.param("kind", "cohere", "Input should be", id="kind"),
        pytest.param("id", "has space", "must be 1-128 characters", id="id"),
    ],
)
def test_provider_field_limits(field: str, value: Any, message: str) -> None:
    """Numeric limits and enumerations are enforced per field."""
    provider = {"id": "a", "kind": "openai", "api_key_env": "K", field: value}
    text = _error(_config(providers=[provider], models=[{"id": "m", "provider": "a"}]))
    assert f"providers[0].{field}: " in text
    assert message in text


def test_model_entry_fields() -> None:
    """Model entries keep capabilities, pricing, tiers and aliases."""
    data = _config(
        models=[
            {
                "id": "gpt-4o-mini",
                "provider": "openai",
                "role": "chat",
                "capabilities": {"vision": False},
                "context_window": 128000,
                "max_output_tokens": 16384,
                "cost_tier": "low",
                "latency_tier": "low",
                "pricing": {"input": "0.15", "output": 0.6, "cached_input": 0.075},
                "aliases": ["mini"],
                "upstream_model": "gpt-4o-mini-2024-07-18",
            }
        ]
    )
    model = PalyraConfig.from_dict(data).models[0]
    assert model.pricing is not None
    assert model.pricing.input == Decimal("0.15")
    assert model.aliases == ("mini",)
    assert model.capabilities.vision is False


def test_output_larger_than_window_is_rejected() -> None:
    """max_output_tokens cannot exceed the context window."""
    data = _config(
        models=[
            {
                "id": "m",
                "provider": "openai",
                "context_window": 100,
                "max_output_tokens": 200,
            }
        ]
    )
    assert "models[0]: max_output_tokens cannot exceed context_window" in _error(data)


def test_role_aliases() -> None:
    """`audio` and `transcription` mean audio_transcription."""
    data = _config(models=[{"id": "w", "provider": "openai", "role": "audio"}])
    assert PalyraConfig.from_dict(data).models[0].role == "audio_transcription"


def test_python_objects_raise_config_error_too() -> None:
    """Building models directly gives the same ConfigError with relative paths."""
    with pytest.raises(ConfigError, match=r"base_url: http is only allowed"):
        palyra.ProviderConfig(id="a", kind="openai", base_url="http://example.com")
    provider = palyra.ProviderConfig(id="a", kind="openai", api_key_env="K")
    model = palyra.ModelEntry(id="m", provider="a")
    config = PalyraConfig(providers=(provider,), models=(model,))
    assert config.models[0].provider == "a"


def test_config_is_frozen() -> None:
    """Configs are immutable values."""
    config = PalyraConfig()
    with pytest.raises(Exception, match="frozen"):
        config.providers[0].enabled = False  # type: ignore[misc]


TOML = """
[defaults]
chat = "mini"

[[providers]]
id = "openai"
kind = "openai"
api_key_env = "OPENAI_API_KEY"

[[models]]
id = "gpt-4o-mini"
provider = "openai"
aliases = ["mini"]
context_window = 128000
"""


def test_from_file_toml(tmp_path: Path) -> None:
    """A TOML file builds the same config as the dict."""
    path = tmp_path / "palyra.toml"
    path.write_text(TOML)
    with palyra.Palyra.from_file(path) as client:
        [info] = client.models()
    assert info.id == "gpt-4o-mini"
    assert info.is_default
    assert info.aliases == ["mini"]


def test_from_file_errors(tmp_path: Path) -> None:
    """Unreadable files and bad TOML are ConfigErrors naming the file."""
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError, match=r"missing\.toml: cannot read"):
        PalyraConfig.from_file(missing)
    bad = tmp_path / "bad.toml"
    bad.write_text("[[providers]\nid=")
    with pytest.raises(ConfigError, match=r"bad\.toml: invalid TOML"):
        PalyraConfig.from_file(bad)


def test_from_dict_rejects_non_mapping() -> None:
    """Only mappings are configurations."""
    with pytest.raises(ConfigError, match="must be a mapping"):
        PalyraConfig.from_dict([1, 2])  # type: ignore[arg-type]


def test_palyra_table_wrapper_is_accepted() -> None:
    """A file may nest everything under a [palyra] table."""
    config = PalyraConfig.from_dict({"palyra": _config()})
    assert config.providers[0].id == "openai"


def test_palyra_table_inside_an_application_file(tmp_path: Path) -> None:
    """Beside the application's own tables, [palyra] is read and the rest left
    alone; errors inside it name the table."""
    path = tmp_path / "app.toml"
    path.write_text(
        """
[app]
name = "mine"
workers = 4

[[palyra.providers]]
id = "local"
kind = "deterministic"

[[palyra.models]]
id = "m"
provider = "local"
aliases = "fast"

[server]
port = 8080
""",
        encoding="utf-8",
    )
    config = PalyraConfig.from_file(path)
    assert [m.aliases for m in config.models] == [("fast",)]
    with pytest.raises(ConfigError) as info:
        PalyraConfig.from_dict({"app": {}, "palyra": {"defualts": {}}})
    assert info.value.errors == [
        ("palyra.defualts", "unknown key; did you mean 'defaults'?")
    ]
    assert "palyra: must be a table" in _error({"palyra": "x"})


@pytest.mark.parametrize(
    ("data", "first"),
    [
        pytest.param(
            {
                "provider": [{"id": "a", "kind": "openai"}],
                "models": [{"id": "m", "provider": "a"}],
            },
            "provider: unknown key; did you mean 'providers'?",
            id="provider",
        ),
        pytest.param(
            {**_config(), "defualts": {"chat": "gpt-4o-mini"}},
            "defualts: unknown key; did you mean 'defaults'?",
            id="defualts",
        ),
        pytest.param(
            _config(
                providers=[{"id": "o", "kind": "openai", "api_key_evn": "K"}],
                models=[{"id": "m", "provider": "o"}],
            ),
            "providers[0].api_key_evn: unknown key; did you mean 'api_key_env'?",
            id="api_key_evn",
        ),
        pytest.param(
            _config(
                models=[
                    {"id": "m", "provider": "openai", "capabilities": {"tool": True}}
                ]
            ),
            "models[0].capabilities.tool: unknown key; did you mean 'tools'?",
            id="nested",
        ),
        pytest.param(
            {**_config(), "resilience": {"retry_after_cpa": 3}},
            "resilience.retry_after_cpa: unknown key; did you mean 'retry_after_cap'?",
            id="resilience",
        ),
        pytest.param(
            {**_config(), "zzz": 1},
            "zzz: unknown key",
            id="no-suggestion",
        ),
    ],
)
def test_unknown_keys_come_first_with_a_suggestion(
    data: dict[str, Any], first: str
) -> None:
    """A misspelt key is the first error reported, with the nearest real key."""
    with pytest.raises(ConfigError) as info:
        PalyraConfig.from_dict(data)
    path, message = info.value.errors[0]
    assert f"{path}: {message}" == first


def test_a_single_alias_or_fallback_may_be_a_string() -> None:
    """aliases = "fast" is one alias; a number there says what is expected."""
    data = _config()
    data["models"] = [
        {"id": "a", "provider": "openai", "aliases": "fast", "fallbacks": "b"},
        {"id": "b", "provider": "openai"},
    ]
    config = PalyraConfig.from_dict(data)
    assert (config.models[0].aliases, config.models[0].fallbacks) == (("fast",), ("b",))
    data["models"][0]["aliases"] = 5
    assert "models[0].aliases: must be a list" in _error(data)


def test_warning_filter_does_not_leak_key() -> None:
    """The inline-key warning message names no secret."""
    data = _config(
        providers=[{"id": "a", "kind": "openai", "api_key": "sk-warnSECRET999"}],
        models=[{"id": "m", "provider": "a"}],
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        PalyraConfig.from_dict(data)
    assert caught
    assert all("sk-warnSECRET999" not in str(w.message) for w in caught)
