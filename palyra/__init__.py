"""palyra: one in-process client for large language models.

Everything public is importable from here; the modules behind it are private.
``palyra.testing`` (test doubles) and, later, ``palyra.asgi`` are the opt-in
public submodules.

Names load on first use (PEP 562), the way pydantic's own do: ``import
palyra`` costs next to nothing, and the first use of any public name loads
the whole surface at once (so every annotation resolves in this namespace).
Static type checkers see the imports below.
"""

import typing

from ._version import __version__

if typing.TYPE_CHECKING:
    from ._access import APITokenError, TokenInfo
    from ._auth import (
        AuthProfile,
        KeyringSecretStore,
        MemorySecretStore,
        OAuthAttempt,
        SecretStore,
    )
    from ._client import Palyra
    from ._config import (
        AuthConfig,
        BudgetConfig,
        Capabilities,
        InsecureConfigWarning,
        LedgerConfig,
        LimitsConfig,
        ModelEntry,
        PalyraConfig,
        Pricing,
        PricingConfig,
        ProviderConfig,
        RegistryDefaults,
        ResilienceConfig,
        RoutingConfig,
        RoutingHint,
        RoutingWeights,
    )
    from ._core import AsyncStream, ModelHealth, Stream
    from ._cron import (
        Job,
        JobContext,
        JobNotFoundError,
        Misfire,
        Retry,
        RunRecord,
        ScheduleError,
        Scheduler,
        SchedulerError,
        catch_up,
    )
    from ._decision import (
        RoutingCandidate,
        RoutingDecision,
        RoutingFeatures,
    )
    from ._exceptions import (
        APIConnectionError,
        APIError,
        APIResponseValidationError,
        APIStatusError,
        APITimeoutError,
        AuthenticationError,
        AuthProfileError,
        BadRequestError,
        BlockedAddressError,
        BudgetExceededError,
        ClientClosedError,
        ConfigError,
        ConflictError,
        ContextWindowExceededError,
        CredentialError,
        InternalServerError,
        InvalidRequestError,
        LedgerError,
        ModelNotFoundError,
        NoProviderAvailableError,
        NotFoundError,
        OAuthError,
        OverloadedError,
        PalyraError,
        PermissionDeniedError,
        RateLimitError,
        RequestTooLargeError,
        ResponseTooLargeError,
        StreamInterruptedError,
        UnprocessableEntityError,
        UnsupportedCapabilityError,
        VaultError,
    )
    from ._governance import (
        BudgetAlert,
        BudgetPolicy,
        BudgetStatus,
        LedgerHealth,
        MemoryLedger,
        PostgresLedger,
        RoutingSavings,
        SQLiteLedger,
        Totals,
        UsageLedger,
        UsageRecord,
        UsageRun,
    )
    from ._observe import CallEvent, ObservabilityStats
    from ._providers import DeterministicBackend, ScriptedReply
    from ._request import ChatOptions, RequestOptions
    from ._state import RedisState, StateUnavailableError
    from ._tokens import TiktokenCounter, TokenCounter, TokenEstimate
    from ._usage import Cost, NormalizedUsage, PriceEntry
    from ._wire import (
        Attempt,
        ChatCompletion,
        ChatCompletionChunk,
        ChatCompletionMessage,
        Choice,
        ChoiceDelta,
        ChoiceDeltaToolCall,
        ChoiceDeltaToolCallFunction,
        ChunkChoice,
        CompletionTokensDetails,
        CompletionUsage,
        Embedding,
        EmbeddingResponse,
        EmbeddingUsage,
        Function,
        ModelCapabilities,
        ModelInfo,
        PalyraInfo,
        PromptTokensDetails,
        ProviderModel,
        TokenCount,
        ToolCall,
        Transcription,
        TranscriptionSegment,
    )

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "APITokenError",
    "AsyncStream",
    "Attempt",
    "AuthConfig",
    "AuthProfile",
    "AuthProfileError",
    "AuthenticationError",
    "BadRequestError",
    "BlockedAddressError",
    "BudgetAlert",
    "BudgetConfig",
    "BudgetExceededError",
    "BudgetPolicy",
    "BudgetStatus",
    "CallEvent",
    "Capabilities",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionMessage",
    "ChatOptions",
    "Choice",
    "ChoiceDelta",
    "ChoiceDeltaToolCall",
    "ChoiceDeltaToolCallFunction",
    "ChunkChoice",
    "ClientClosedError",
    "CompletionTokensDetails",
    "CompletionUsage",
    "ConfigError",
    "ConflictError",
    "ContextWindowExceededError",
    "Cost",
    "CredentialError",
    "DeterministicBackend",
    "Embedding",
    "EmbeddingResponse",
    "EmbeddingUsage",
    "Function",
    "InsecureConfigWarning",
    "InternalServerError",
    "InvalidRequestError",
    "Job",
    "JobContext",
    "JobNotFoundError",
    "KeyringSecretStore",
    "LedgerConfig",
    "LedgerError",
    "LedgerHealth",
    "LimitsConfig",
    "MemoryLedger",
    "MemorySecretStore",
    "Misfire",
    "ModelCapabilities",
    "ModelEntry",
    "ModelHealth",
    "ModelInfo",
    "ModelNotFoundError",
    "NoProviderAvailableError",
    "NormalizedUsage",
    "NotFoundError",
    "OAuthAttempt",
    "OAuthError",
    "ObservabilityStats",
    "OverloadedError",
    "Palyra",
    "PalyraConfig",
    "PalyraError",
    "PalyraInfo",
    "PermissionDeniedError",
    "PostgresLedger",
    "PriceEntry",
    "Pricing",
    "PricingConfig",
    "PromptTokensDetails",
    "ProviderConfig",
    "ProviderModel",
    "RateLimitError",
    "RedisState",
    "RegistryDefaults",
    "RequestOptions",
    "RequestTooLargeError",
    "ResilienceConfig",
    "ResponseTooLargeError",
    "Retry",
    "RoutingCandidate",
    "RoutingConfig",
    "RoutingDecision",
    "RoutingFeatures",
    "RoutingHint",
    "RoutingSavings",
    "RoutingWeights",
    "RunRecord",
    "SQLiteLedger",
    "ScheduleError",
    "Scheduler",
    "SchedulerError",
    "ScriptedReply",
    "SecretStore",
    "StateUnavailableError",
    "Stream",
    "StreamInterruptedError",
    "TiktokenCounter",
    "TokenCount",
    "TokenCounter",
    "TokenEstimate",
    "TokenInfo",
    "ToolCall",
    "Totals",
    "Transcription",
    "TranscriptionSegment",
    "UnprocessableEntityError",
    "UnsupportedCapabilityError",
    "UsageLedger",
    "UsageRecord",
    "UsageRun",
    "VaultError",
    "__version__",
    "catch_up",
]

# The module each public name comes from; the TYPE_CHECKING imports above
# say the same (tests/test_exported_members.py checks that they agree).
_SOURCES = {
    "._access": ("APITokenError", "TokenInfo"),
    "._auth": (
        "AuthProfile",
        "KeyringSecretStore",
        "MemorySecretStore",
        "OAuthAttempt",
        "SecretStore",
    ),
    "._client": ("Palyra",),
    "._cron": (
        "Job",
        "JobContext",
        "JobNotFoundError",
        "Misfire",
        "Retry",
        "RunRecord",
        "ScheduleError",
        "Scheduler",
        "SchedulerError",
        "catch_up",
    ),
    "._config": (
        "AuthConfig",
        "BudgetConfig",
        "Capabilities",
        "InsecureConfigWarning",
        "LedgerConfig",
        "LimitsConfig",
        "ModelEntry",
        "PalyraConfig",
        "Pricing",
        "PricingConfig",
        "ProviderConfig",
        "RegistryDefaults",
        "ResilienceConfig",
        "RoutingConfig",
        "RoutingHint",
        "RoutingWeights",
    ),
    "._core": ("AsyncStream", "ModelHealth", "Stream"),
    "._decision": (
        "RoutingCandidate",
        "RoutingDecision",
        "RoutingFeatures",
    ),
    "._exceptions": (
        "APIConnectionError",
        "APIError",
        "APIResponseValidationError",
        "APIStatusError",
        "APITimeoutError",
        "AuthProfileError",
        "AuthenticationError",
        "BadRequestError",
        "BlockedAddressError",
        "BudgetExceededError",
        "ClientClosedError",
        "ConfigError",
        "ConflictError",
        "ContextWindowExceededError",
        "CredentialError",
        "InternalServerError",
        "InvalidRequestError",
        "LedgerError",
        "ModelNotFoundError",
        "NoProviderAvailableError",
        "NotFoundError",
        "OAuthError",
        "OverloadedError",
        "PalyraError",
        "PermissionDeniedError",
        "RateLimitError",
        "RequestTooLargeError",
        "ResponseTooLargeError",
        "StreamInterruptedError",
        "UnprocessableEntityError",
        "UnsupportedCapabilityError",
        "VaultError",
    ),
    "._governance": (
        "BudgetAlert",
        "BudgetPolicy",
        "BudgetStatus",
        "LedgerHealth",
        "MemoryLedger",
        "PostgresLedger",
        "RoutingSavings",
        "SQLiteLedger",
        "Totals",
        "UsageLedger",
        "UsageRecord",
        "UsageRun",
    ),
    "._observe": ("CallEvent", "ObservabilityStats"),
    "._providers": ("DeterministicBackend", "ScriptedReply"),
    "._request": ("ChatOptions", "RequestOptions"),
    "._state": ("RedisState", "StateUnavailableError"),
    "._tokens": ("TiktokenCounter", "TokenCounter", "TokenEstimate"),
    "._usage": ("Cost", "NormalizedUsage", "PriceEntry"),
    "._wire": (
        "Attempt",
        "ChatCompletion",
        "ChatCompletionChunk",
        "ChatCompletionMessage",
        "Choice",
        "ChoiceDelta",
        "ChoiceDeltaToolCall",
        "ChoiceDeltaToolCallFunction",
        "ChunkChoice",
        "CompletionTokensDetails",
        "CompletionUsage",
        "Embedding",
        "EmbeddingResponse",
        "EmbeddingUsage",
        "Function",
        "ModelCapabilities",
        "ModelInfo",
        "PalyraInfo",
        "PromptTokensDetails",
        "ProviderModel",
        "TokenCount",
        "ToolCall",
        "Transcription",
        "TranscriptionSegment",
    ),
}
_LAZY = {name: module for module, names in _SOURCES.items() for name in names}
# Loaded only when asked for by name: SQLiteLedger brings sqlite3, which a
# client loads with its first usage record, not with the rest of palyra
# (PostgresLedger's module is kept apart likewise; psycopg loads when one is made).
_ON_ITS_OWN = frozenset({"PostgresLedger", "SQLiteLedger"})


def __getattr__(name: str) -> object:
    if name not in _LAZY:
        raise AttributeError(f"module 'palyra' has no attribute {name!r}")
    _load()
    if name in _ON_ITS_OWN:
        _load_one(name)
    return globals()[name]


def _load() -> None:
    # Every module at once: the public classes' annotations name each other,
    # and tools resolve them in this namespace (their __module__ is palyra).
    import importlib

    for module, names in _SOURCES.items():
        source = importlib.import_module(module, __name__)
        for public in names:
            if public in _ON_ITS_OWN:
                continue
            value = getattr(source, public)
            # Reprs, tracebacks and docs say `palyra.X`, not the private module.
            value.__module__ = "palyra"
            globals()[public] = value


def _load_one(name: str) -> None:
    import importlib

    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    value.__module__ = "palyra"
    globals()[name] = value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
