"""The ``palyra`` command's arguments: every command, its options, its help
and examples. Standard library only, so that ``palyra --help`` and a usage
error cost no more than the interpreter's start."""

from __future__ import annotations

import argparse

__all__ = ["build"]

_MAIN = """\
examples:
  palyra chat "Summarise RFC 9110 in one line"
  echo "a haiku on caching" | palyra chat -m gpt-4o-mini
  palyra models
  palyra usage --by day --since 7d --chart
  palyra config check palyra.toml

The configuration comes from --config, else $PALYRA_CONFIG, else the offline
deterministic provider. Exit codes: 0 ok, 1 an operation failed, 2 a usage
error, 130 interrupted.
"""


def _command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    examples: str,
) -> argparse.ArgumentParser:
    return commands.add_parser(
        name,
        help=summary,
        description=summary,
        epilog="examples:\n" + examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _days(text: str) -> float:
    """A number of days in (0, 36600] (argparse reports anything else)."""
    try:
        days = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of days: {text!r}") from None
    if not 0 < days <= 36_600:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"days take (0, 36600], not {text!r}")
    return days


def _sub(
    steps: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    example: str,
) -> argparse.ArgumentParser:
    """A second-level command, with its example in its help."""
    return steps.add_parser(
        name,
        help=summary,
        description=summary,
        epilog="examples:\n  " + example + "\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def build() -> argparse.ArgumentParser:
    """The whole command line."""
    parser = argparse.ArgumentParser(
        prog="palyra",
        description="palyra: one in-process client for large language models.",
        epilog=_MAIN,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config", help="the TOML configuration (default: $PALYRA_CONFIG)"
    )
    parser.add_argument("--debug", action="store_true", help="tracebacks on errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _chat(commands)
    _registry(commands)
    _auth(commands)
    _ledger(commands)
    _admin(commands)
    _serve(commands)
    return parser


def _chat(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    chat = _command(
        commands,
        "chat",
        "send a prompt and stream the answer (a session with no prompt on a terminal)",
        '  palyra chat "What is a circuit breaker?"\n'
        "  cat notes.txt | palyra chat --system 'Summarise' -m gpt-4o-mini\n"
        "  palyra chat            # interactive: /model NAME, /exit\n"
        "  palyra chat hi --json  # the whole completion as JSON\n",
    )
    chat.add_argument(
        "prompt", nargs="?", help="the prompt (default: stdin when piped)"
    )
    chat.add_argument("-m", "--model", help="a registry model id or alias")
    chat.add_argument("--system", help="a system message")
    chat.add_argument("--agent", help="the agent the call is for")
    chat.add_argument(
        "--json", action="store_true", help="print the completion as JSON"
    )


def _registry(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    models = _command(
        commands,
        "models",
        "the registry: models, capabilities, prices, health and breaker state",
        "  palyra models\n  palyra models --json\n",
    )
    models.add_argument("--json", action="store_true", help="machine output")
    route = _command(
        commands,
        "route",
        "explain the routing decision for a prompt, calling no provider",
        '  palyra route "Prove that the halting problem is undecidable"\n'
        '  palyra route "classify: spam or not" --hint classification --json\n',
    )
    route.add_argument("prompt", help="the prompt to route")
    route.add_argument("-m", "--model", help="the model asked for")
    route.add_argument("--hint", help="a task hint (classification, reasoning, ...)")
    route.add_argument("--json", action="store_true", help="machine output")


def _auth(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    auth = _command(
        commands,
        "auth",
        "auth profiles in the OS keyring: connect, login, list, refresh, revoke",
        "  palyra auth connect openai     # the key is asked for, never an argument\n"
        "  palyra auth login up           # OAuth in the browser, loopback callback\n"
        "  palyra auth list\n  palyra auth refresh up-oauth\n",
    )
    steps = auth.add_subparsers(dest="action", metavar="ACTION", required=True)
    connect = _sub(
        steps,
        "connect",
        "keep an API key (read without echo)",
        "palyra auth connect openai --name work",
    )
    connect.add_argument("provider")
    connect.add_argument("--name", help="the profile's name (default: default)")
    connect.add_argument("--agent", help="only this agent's calls see it")
    connect.add_argument("--no-check", action="store_true", help="do not try the key")
    login = _sub(
        steps,
        "login",
        "sign in with OAuth (PKCE, loopback)",
        "palyra auth login up --no-browser",
    )
    login.add_argument("provider")
    login.add_argument("--name", help="the profile's name")
    login.add_argument("--no-browser", action="store_true", help="print the URL only")
    _sub(
        steps, "list", "every profile and its health", "palyra auth list --json"
    ).add_argument("--json", action="store_true", help="machine output")
    for action, text in (
        ("refresh", "refresh an OAuth token now"),
        ("revoke", "revoke and forget"),
    ):
        _sub(steps, action, text, f"palyra auth {action} openai-work").add_argument(
            "profile_id"
        )
    tokens = _command(
        commands,
        "tokens",
        "API tokens of the /v1 surface (the secret is shown once)",
        "  palyra tokens create ci --scope chat --agent ci-bot --rate-limit 60\n"
        "  palyra tokens list\n  palyra tokens revoke tok_0123456789abcdef\n",
    )
    kinds = tokens.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = _sub(
        kinds,
        "create",
        "make a token",
        "palyra tokens create ci --scope chat --days 30",
    )
    create.add_argument("name")
    create.add_argument(
        "--scope",
        action="append",
        help="chat, embeddings, audio, models (these by default), admin (the console)",
    )
    create.add_argument("--agent", help="every call through it runs as this agent")
    create.add_argument("--rate-limit", type=int, help="requests per minute")
    create.add_argument("--days", type=_days, help="expires after this many days")
    _sub(kinds, "list", "every token", "palyra tokens list --json").add_argument(
        "--json", action="store_true", help="machine output"
    )
    _sub(
        kinds,
        "revoke",
        "stop a token at once",
        "palyra tokens revoke tok_0123456789abcdef",
    ).add_argument("token_id")


def _ledger(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    usage = _command(
        commands,
        "usage",
        "what calls used and cost, from the ledger",
        "  palyra usage\n  palyra usage --by agent --since 30d\n"
        "  palyra usage --by day --since 14d --chart\n"
        "  palyra usage --by model --csv\n",
    )
    usage.add_argument(
        "--by", default="model", help="model, provider, agent, day, ... (a,b for two)"
    )
    usage.add_argument(
        "--since", help="7d, 24h, 90m or an ISO date (default: everything)"
    )
    usage.add_argument("--agent", help="only this agent's calls")
    usage.add_argument("--tz", default="UTC", help="the zone days are counted in")
    out = usage.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="JSON rows")
    out.add_argument("--csv", action="store_true", help="CSV rows")
    out.add_argument("--chart", action="store_true", help="a bar chart of daily spend")
    budgets = _command(
        commands,
        "budgets",
        "each budget: spent, reserved, remaining, and when it resets",
        "  palyra budgets\n  palyra budgets --json\n",
    )
    budgets.add_argument("--json", action="store_true", help="machine output")
    jobs = _command(
        commands,
        "jobs",
        "the scheduler's [[jobs]]: list, run one now, next fire times",
        "  palyra jobs list\n  palyra jobs run health_probe\n"
        "  palyra jobs next ledger_retention -n 3\n",
    )
    acts = jobs.add_subparsers(dest="action", metavar="ACTION", required=True)
    _sub(
        acts, "list", "the jobs and their next fire", "palyra jobs list --json"
    ).add_argument("--json", action="store_true", help="machine output")
    runs = _sub(
        acts, "run", "run a job now, once", "palyra jobs run health_probe --wait 60"
    )
    runs.add_argument("job_id")
    runs.add_argument(
        "--wait",
        type=float,
        help="seconds to wait (default: its max_runtime + 5, else 300)",
    )
    following = _sub(
        acts,
        "next",
        "a job's next fire times",
        "palyra jobs next ledger_retention -n 3",
    )
    following.add_argument("job_id")
    following.add_argument("-n", type=int, default=5, help="how many (default 5)")


def _admin(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    config = _command(
        commands,
        "config",
        "check a configuration, or show it resolved (secrets as references)",
        "  palyra config check palyra.toml\n"
        "  palyra --config palyra.toml config show\n",
    )
    acts = config.add_subparsers(dest="action", metavar="ACTION", required=True)
    _sub(
        acts, "check", "every error, with its path", "palyra config check palyra.toml"
    ).add_argument("path", nargs="?", help="default: --config or $PALYRA_CONFIG")
    _sub(
        acts,
        "show",
        "the resolved configuration as JSON, secrets as references",
        "palyra --config palyra.toml config show",
    )
    doctor = _command(
        commands,
        "doctor",
        "check the keyring, the home directory, the ledger, the config, the providers",
        "  palyra doctor\n  palyra doctor --online   # one cheap call per provider\n",
    )
    doctor.add_argument("--online", action="store_true", help="try each provider")


def _serve(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = _command(
        commands,
        "serve",
        "serve the /v1 surface under uvicorn (pip install 'palyra[server]')",
        "  palyra serve --config palyra.toml --port 8000 --workers 2\n"
        "  palyra serve --config palyra.toml --console\n",
    )
    serve.add_argument("--config", dest="serve_config", help="the palyra TOML file")
    serve.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    serve.add_argument("--port", type=int, default=8000, help="default: 8000")
    serve.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    serve.add_argument(
        "--no-auth", action="store_true", help="serve callers without a token"
    )
    serve.add_argument(
        "--console",
        action="store_true",
        help="serve the admin console at /console (an admin-scoped token signs in)",
    )
