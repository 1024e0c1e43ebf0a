"""Configuration: frozen pydantic models of providers, models and the tables
of each subsystem, from Python objects, a dict or TOML.

What it is for: every configuration model and its validation. Whatever the
source, a bad configuration raises `ConfigError` naming the path of each bad
field, e.g. ``providers[1].base_url: http is only allowed for loopback hosts;
use https``. Configs hold secret *references* (an environment variable name,
an auth profile id); an inline ``api_key`` is accepted with a warning and kept
as a `pydantic.SecretStr`. The subsystems' tables (auth, ledger, budgets,
routing, state) join here as modules of their own, so `PalyraConfig` can hold
them without this leaf importing any subsystem.

May import: ``_exceptions``, ``_utils``, pydantic and the standard library.
Never the core, the providers or a subsystem.

Exports to the rest of palyra: the public models below, `ModelRole`, the
per-kind defaults and `parse_window` (the budget window syntax).
"""

from .base import InsecureConfigWarning
from .budgets import BudgetConfig, parse_window
from .governance import LedgerConfig, PricingConfig
from .jobs import JOB_KINDS, JobConfig
from .models import Capabilities, ModelEntry, ModelRole, Pricing
from .oauth import OAuthConfig, check_endpoint
from .observability import ObservabilityConfig
from .providers import (
    DEFAULT_AUTH_HEADERS,
    DEFAULT_BASE_URLS,
    AuthHeader,
    ProviderConfig,
    ProviderKind,
)
from .root import (
    AuthConfig,
    LimitsConfig,
    PalyraConfig,
    RegistryDefaults,
    ResilienceConfig,
)
from .routing import (
    DEFAULT_HINTS,
    DEFAULT_KEYWORDS,
    DEFAULT_TIERS,
    ROUTING_MODES,
    RoutingConfig,
    RoutingHint,
    RoutingMode,
    RoutingWeights,
    parse_mode,
)
from .state import REDIS_SCHEMES, StateConfig, redis_target

__all__ = [
    "DEFAULT_AUTH_HEADERS",
    "DEFAULT_BASE_URLS",
    "DEFAULT_HINTS",
    "DEFAULT_KEYWORDS",
    "DEFAULT_TIERS",
    "JOB_KINDS",
    "REDIS_SCHEMES",
    "ROUTING_MODES",
    "AuthConfig",
    "AuthHeader",
    "BudgetConfig",
    "Capabilities",
    "InsecureConfigWarning",
    "JobConfig",
    "LedgerConfig",
    "LimitsConfig",
    "ModelEntry",
    "ModelRole",
    "OAuthConfig",
    "ObservabilityConfig",
    "PalyraConfig",
    "Pricing",
    "PricingConfig",
    "ProviderConfig",
    "ProviderKind",
    "RegistryDefaults",
    "ResilienceConfig",
    "RoutingConfig",
    "RoutingHint",
    "RoutingMode",
    "RoutingWeights",
    "StateConfig",
    "check_endpoint",
    "parse_mode",
    "parse_window",
    "redis_target",
]
