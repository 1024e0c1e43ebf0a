"""``palyra config check|show`` (every error with its path; the resolved
configuration with secrets as references) and ``palyra doctor`` (the
keyring, the home directory, the ledger, the configuration, the providers)."""

from __future__ import annotations

import argparse
import os
import stat
import sys
from typing import Any

from .dispatch import client_from, config_path
from .output import CommandError, emit_json

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    """``config ...`` or ``doctor``."""
    if args.command == "doctor":
        return _doctor(args)
    if args.action == "check":
        return _check(args.path or config_path(args))
    with client_from(args) as client:
        emit_json(shown(client.config))
    return 0


def _check(path: str | None) -> int:
    from .._config import PalyraConfig
    from .._exceptions import ConfigError

    if path is None:
        raise CommandError("give the file: palyra config check palyra.toml", 2)
    try:
        config = PalyraConfig.from_file(path)
        _check_schedules(config)
    except ConfigError as exc:
        print(f"{path}: {len(exc.errors)} error(s)", file=sys.stderr)
        for where, message in exc.errors:
            print(f"  {where or '(file)'}: {message}", file=sys.stderr)
        return 1
    counts = (
        f"{len(config.providers)} provider(s), {len(config.models)} model(s),"
        f" {len(config.budgets)} budget(s), {len(config.jobs)} job(s)"
    )
    print(f"{path}: valid ({counts})")
    return 0


def _check_schedules(config: Any) -> None:
    """Cron expressions are read by croniter only when the scheduler is made:
    make it here, so that a bad one is a ConfigError naming its entry."""
    from .._client import Palyra
    from .._cron import ScheduleError
    from .._exceptions import ConfigError

    if not config.jobs:
        return
    with Palyra(config, ledger=False) as client:
        try:
            client.scheduler  # noqa: B018 - made, with the [[jobs]], on first use
        except ScheduleError as exc:
            raise ConfigError([(exc.field, str(exc).split(": ", 1)[-1])]) from None


def shown(config: Any) -> dict[str, Any]:
    """The configuration as JSON, each secret replaced by where it comes from."""
    data: dict[str, Any] = config.model_dump(mode="json", exclude_none=True)
    for given, provider in zip(
        config.providers, data.get("providers", []), strict=True
    ):
        if given.api_key is not None:
            provider["api_key"] = "<inline key: prefer api_key_env or an auth profile>"
        if given.api_key_env is not None:
            state = "set" if os.environ.get(given.api_key_env) else "not set"
            provider["api_key_env"] = f"${given.api_key_env} ({state})"
    return data


def _doctor(args: argparse.Namespace) -> int:
    checks: list[tuple[bool, str]] = []
    try:
        client = client_from(args)
    except Exception as exc:  # a bad config is the finding
        print(f"FAIL config: {type(exc).__name__}: {' '.join(str(exc).split())}")
        return 1
    with client:
        checks.append(
            (True, f"config: {config_path(args) or 'none (the offline provider)'}")
        )
        checks.append(_keyring())
        checks.append(_home(client))
        checks.append(_ledger(client))
        checks.extend(_providers(client, args.online))
    for ok, text in checks:
        print(f"{'ok  ' if ok else 'FAIL'} {text}")
    return 0 if all(ok for ok, _ in checks) else 1


def _keyring() -> tuple[bool, str]:
    try:
        import keyring
        from keyring.backends import fail

        backend = keyring.get_keyring()
    except Exception as exc:  # no backend importable at all
        return False, f"keyring: {type(exc).__name__}: {exc}"
    name = f"{type(backend).__module__}.{type(backend).__name__}"
    if isinstance(backend, fail.Keyring):
        return False, f"keyring: no usable backend ({name}): secrets cannot be kept"
    return True, f"keyring: {name}"


def _home(client: Any) -> tuple[bool, str]:
    from .._auth import default_home

    home = default_home()
    if not home.exists():
        return True, f"home: {home} (made on first use)"
    mode = stat.S_IMODE(home.stat().st_mode)
    if not os.access(home, os.W_OK):
        return False, f"home: {home} is not writable"
    if mode & 0o077:
        return False, f"home: {home} is readable by others (mode {mode:o}; chmod 700)"
    return True, f"home: {home} (mode {mode:o})"


def _ledger(client: Any) -> tuple[bool, str]:
    try:
        calls = sum(t.calls for t in client.usage.totals(by="currency"))
        health = client.usage.health()
    except Exception as exc:
        return False, f"ledger: {type(exc).__name__}: {' '.join(str(exc).split())}"
    if not health.ok:
        return False, f"ledger: {health.path}: {health.last_error}"
    return True, f"ledger: {health.path} ({calls} call(s) recorded)"


def _providers(client: Any, online: bool) -> list[tuple[bool, str]]:
    found = []
    for provider in client.config.providers:
        if not provider.enabled:
            found.append((True, f"provider {provider.id}: disabled"))
            continue
        if not online:
            found.append(
                (
                    True,
                    f"provider {provider.id} ({provider.kind}): not tried (--online)",
                )
            )
            continue
        try:
            listed = client.provider_models(provider.id)
            found.append(
                (True, f"provider {provider.id}: reachable ({len(listed)} model(s))")
            )
        except Exception as exc:
            text = " ".join(str(exc).split())
            found.append(
                (False, f"provider {provider.id}: {type(exc).__name__}: {text}")
            )
    return found
