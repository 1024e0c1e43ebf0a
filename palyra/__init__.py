"""palyra: one in-process client for large language models.

Everything public is importable from here; the modules behind it are private.
``palyra.testing`` (test doubles) is the opt-in public submodule.
"""

from ._client import *
from ._config import *
from ._core.health import ModelHealth
from ._core.streams import *
from ._exceptions import *
from ._request import *
from ._tokens import *
from ._version import __version__
from ._wire import *

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncStream",
    "Attempt",
    "AuthenticationError",
    "BadRequestError",
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
    "CompletionTokensDetails",
    "CompletionUsage",
    "ConfigError",
    "ConflictError",
    "ContextWindowExceededError",
    "CredentialError",
    "DeterministicBackend",
    "Embedding",
    "EmbeddingResponse",
    "EmbeddingUsage",
    "Function",
    "InsecureConfigWarning",
    "InternalServerError",
    "InvalidRequestError",
    "ModelCapabilities",
    "ModelEntry",
    "ModelHealth",
    "ModelInfo",
    "ModelNotFoundError",
    "NoProviderAvailableError",
    "NotFoundError",
    "OverloadedError",
    "Palyra",
    "PalyraConfig",
    "PalyraError",
    "PalyraInfo",
    "PermissionDeniedError",
    "Pricing",
    "PromptTokensDetails",
    "ProviderConfig",
    "ProviderModel",
    "RateLimitError",
    "RegistryDefaults",
    "RequestTooLargeError",
    "ResilienceConfig",
    "ScriptedReply",
    "Stream",
    "StreamInterruptedError",
    "TiktokenCounter",
    "TokenCount",
    "TokenCounter",
    "TokenEstimate",
    "ToolCall",
    "Transcription",
    "TranscriptionSegment",
    "UnprocessableEntityError",
    "UnsupportedCapabilityError",
    "__version__",
]

# The deterministic backend module is only imported when first used.
_LAZY = {
    "DeterministicBackend": "palyra._providers.deterministic",
    "ScriptedReply": "palyra._providers.deterministic",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'palyra' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    value.__module__ = "palyra"
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


# Reprs, tracebacks and docs say `palyra.X`, not the private module.
__locals = locals()
for __name in __all__:
    if not __name.startswith("__") and __name not in _LAZY:
        __locals[__name].__module__ = "palyra"
