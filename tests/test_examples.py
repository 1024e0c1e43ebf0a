"""Every script in examples/ runs offline and prints what it promises."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.conftest import FAKE_KEY

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` as a module."""
    spec = importlib.util.spec_from_file_location(
        f"palyra_example_{name}", EXAMPLES / f"{name}.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class OpenAIMock:
    """An OpenAI-shaped upstream for `httpx.MockTransport`: JSON, SSE, embeddings.

    Chat answers echo the last user message; every request is recorded.
    """

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def transport(self) -> httpx.MockTransport:
        """A transport serving both sync and async clients."""
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one request like the OpenAI API would."""
        self.requests.append(request)
        body = json.loads(request.content)
        path = request.url.path
        if path.endswith("/chat/completions"):
            text = str(body["messages"][-1]["content"])
            if body.get("stream"):
                return self._stream(body, text)
            return self._json(
                {
                    "id": "chatcmpl-mock",
                    "object": "chat.completion",
                    "created": 1,
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": 7,
                        "completion_tokens": 3,
                        "total_tokens": 10,
                    },
                }
            )
        if path.endswith("/embeddings"):
            size = body.get("dimensions", 8)
            data = [
                {"object": "embedding", "index": i, "embedding": [0.5] * size}
                for i, _ in enumerate(body["input"])
            ]
            usage = {"prompt_tokens": 4, "total_tokens": 4}
            return self._json(
                {"object": "list", "data": data, "model": body["model"], "usage": usage}
            )
        error = {"message": f"no route {path}", "type": "invalid_request_error"}
        return httpx.Response(404, json={"error": error})

    @staticmethod
    def _json(payload: dict[str, Any]) -> httpx.Response:
        return httpx.Response(200, json=payload, headers={"x-request-id": "req_mock"})

    @staticmethod
    def _stream(body: dict[str, Any], text: str) -> httpx.Response:
        base = {"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1}
        base["model"] = body["model"]
        words = text.split(" ")
        deltas = [{"content": w if i == 0 else " " + w} for i, w in enumerate(words)]
        events: list[dict[str, Any]] = [
            {**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}]}
            for d in deltas
        ]
        events.append(
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        )
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}
            events.append({**base, "choices": [], "usage": usage})
        sse = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, text=sse
        )


def test_quickstart_runs_offline_in_a_fresh_process() -> None:
    """quickstart.py prints a chat, a stream, an estimate, an embedding, a tool call."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "ANTHROPIC_", "PALYRA_"))
    }
    # The test's own palyra home (the usage ledger goes there), never the user's.
    env["PALYRA_HOME"] = os.environ["PALYRA_HOME"]
    # Any real HTTP request would fail fast through a dead proxy.
    dead = "http://127.0.0.1:9"
    env.update(HTTP_PROXY=dead, HTTPS_PROXY=dead, ALL_PROXY=dead, NO_PROXY="")
    env["PYTHONWARNINGS"] = "error"
    result = subprocess.run(
        [sys.executable, "examples/quickstart.py"],
        check=True,
        capture_output=True,
        timeout=120,
        cwd=ROOT,
        env=env,
        text=True,
    )
    out = result.stdout
    assert result.stderr == ""
    for line in (
        "1. Chat",
        "assistant: Hello, palyra! What can you do?",
        "served by: provider=deterministic model=deterministic-chat",
        "2. Token estimate (made before the request was sent)",
        "prompt tokens, approximate, encoding cl100k_base",
        "3. Streaming",
        "[Streaming sends the answer][ in small pieces, so]",
        "4. Embedding",
        "dimensions: 64 (unit length: 1.000)",
        "served by: provider=deterministic model=deterministic-embeddings",
        "finish_reason: tool_calls",
        "model asks:    get_weather({'city': 'Paris'})",
        "assistant:     It is 18 degrees and sunny in Paris.",
    ):
        assert line in out, f"{line!r} missing from:\n{out}"
    # The docs show the same output (bar the version line).
    shown = documented_quickstart_output()
    assert out.splitlines()[1:] == shown.splitlines()[1:], "update docs/quickstart.md"


def documented_quickstart_output() -> str:
    """The quickstart output shown at the end of docs/quickstart.md."""
    page = (ROOT / "docs" / "quickstart.md").read_text(encoding="utf-8")
    marker = "Output of `python examples/quickstart.py`:\n\n```text\n"
    assert marker in page
    return page.split(marker, 1)[1].split("```", 1)[0]


def test_quickstart_main_runs_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    """quickstart.main() works in-process too, with warnings as errors."""
    load_example("quickstart").main()
    out = capsys.readouterr().out
    assert "requests recorded in client.deterministic().history: 5" in out


def test_async_chat_offline(capsys: pytest.CaptureFixture[str]) -> None:
    """async_chat.py runs achat, astream and aembed together on the default client."""
    load_example("async_chat").main()
    out = capsys.readouterr().out
    assert "achat:   Hello from asyncio" in out
    assert "astream: 2 pieces -> Streams and chats can run side by side." in out
    assert "aembed:  2 vectors of 64 dimensions" in out


def test_async_chat_against_a_mock_server(capsys: pytest.CaptureFixture[str]) -> None:
    """async_chat.py sends its three calls to the local server, with no auth header."""
    upstream = OpenAIMock()
    load_example("async_chat").main(upstream.transport())
    out = capsys.readouterr().out
    assert "achat:   Hello from asyncio" in out
    assert "astream: 8 pieces -> Streams and chats can run side by side." in out
    assert "aembed:  2 vectors of 8 dimensions" in out
    assert sorted(r.url.path for r in upstream.requests) == [
        "/v1/chat/completions",
        "/v1/chat/completions",
        "/v1/embeddings",
    ]
    assert all(r.url.host == "localhost" for r in upstream.requests)
    assert all("authorization" not in r.headers for r in upstream.requests)


def test_openai_compatible_without_a_key_explains(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With no transport and no OPENAI_API_KEY, the example says what to set."""
    load_example("openai_compatible").main()
    out = capsys.readouterr().out
    assert "OPENAI_API_KEY is not set" in out
    assert "export OPENAI_API_KEY=sk-..." in out


def test_openai_compatible_against_a_mock_transport(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The example's chat, stream and embeddings reach OpenAI's URLs with the key."""
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    upstream = OpenAIMock()
    load_example("openai_compatible").main(upstream.transport())
    out = capsys.readouterr().out
    assert "chat:   What is an embedding?" in out
    assert "provider=openai model=gpt-4o-mini request_id=req_mock" in out
    assert "stream: Count to five." in out
    assert "usage: 12 tokens" in out
    assert "embed:  2 vectors of 256 dimensions" in out
    assert FAKE_KEY not in out
    chat, stream, embed = upstream.requests
    assert str(chat.url) == "https://api.openai.com/v1/chat/completions"
    assert chat.headers["authorization"] == f"Bearer {FAKE_KEY}"
    sent = json.loads(chat.content)
    assert sent["model"] == "gpt-4o-mini"
    assert sent["temperature"] == 0.2
    assert sent["max_completion_tokens"] == 60
    assert json.loads(stream.content)["stream_options"] == {"include_usage": True}
    assert json.loads(embed.content)["dimensions"] == 256


def test_config_file(capsys: pytest.CaptureFixture[str]) -> None:
    """config_file.py loads a TOML file and prints a ConfigError naming bad fields."""
    load_example("config_file").main()
    out = capsys.readouterr().out
    assert "Palyra(providers=[local, openai], models=2)" in out
    assert "local-chat: chat on local [deterministic] (default)" in out
    assert "reply: Hi from a file" in out
    assert "served by: local/local-chat" in out
    assert (
        "providers[0].base_url: http is only allowed for loopback hosts; use https"
        in out
    )
    assert "models[0].temprature: unknown key" in out


def test_error_handling(capsys: pytest.CaptureFixture[str]) -> None:
    """error_handling.py catches scripted status errors and pre-dispatch errors."""
    load_example("error_handling").main()
    out = capsys.readouterr().out
    assert (
        "RateLimitError: HTTP 429: Rate limit reached; retry in 2s"
        " (provider=deterministic, model=deterministic-chat, request_id=det)" in out
    )
    assert "provider=deterministic model=deterministic-chat status=429" in out
    assert "InternalServerError (HTTP 500): The upstream fell over" in out
    assert "next call succeeds: 'Hello'" in out
    assert "ContextWindowExceededError: prompt of ~" in out
    assert "no request was sent: True" in out
    assert "does not support vision" in out
    assert "missing capability: vision" in out
    assert "ModelNotFoundError: unknown model 'gpt-5'" in out


def test_failover(capsys: pytest.CaptureFixture[str]) -> None:
    """failover.py: retries, failover, an open breaker skipped, a probe closing it."""
    load_example("failover").main()
    out = capsys.readouterr().out.splitlines()
    assert out.count("served by spare (asked for main)") == 3
    assert out.count("  main: error server_error 503") == 4
    assert "  main: skipped  -" in out
    assert "main: breaker open, status degraded" in out
    assert "served by main (asked for main)" in out
    assert out[-1] == "after the probe: {'spare': 'closed', 'main': 'closed'}"


def test_agents(capsys: pytest.CaptureFixture[str]) -> None:
    """agents.py: bound views carry who each call is for; bad values are refused."""
    load_example("agents").main()
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        "Palyra(providers=[deterministic], models=2, agent='planner',"
        " tags={'team': 'travel'})"
    )
    assert out[1] == (
        "planner  session=trip-7 principal=user:1234 tags={'team': 'travel'}"
    )
    assert out[2].endswith("tags={'team': 'travel', 'step': 'draft'}")
    assert out[3] == (
        "streamed 'Check the draft' for writer, tags {'team': 'travel',"
        " 'step': 'review'}"
    )
    assert out[4] == "requests seen by the shared backend: 3"
    assert out[5].startswith("refused: agent: must be 1-128 characters")


def test_budgets(capsys: pytest.CaptureFixture[str]) -> None:
    """budgets.py: a per-agent daily budget alerts, then blocks with nothing
    sent; usage tables by model and by day come from the ledger."""
    load_example("budgets").main()
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert (
        sum(line.startswith("  ALERT agent-daily for researcher") for line in lines)
        == 2
    )
    assert "spent $0.0624000000, 50% of the soft limit $0.10" in out
    assert "spent $0.1248000000, 100% of the soft limit $0.10" in out
    assert lines.index("call 9 (smart)") + 1 == lines.index(
        "  BLOCKED before it was sent:"
    )
    for line in (
        "  policy=agent-daily scope=agent value=researcher",
        "  window=day in America/New_York reason=hard_limit",
        "  spent=0.1352000000 reserved=0.0000000000",
        "  requested=0.0960000000 limit=0.20",
        "requests sent: 8 (the blocked call sent none)",
        "recorded too: BudgetExceededError, $0",
        "  ALERT agent-daily for writer: spent $0.0520000000, 50% of the soft"
        " limit $0.10",
        "agent-daily [researcher]: spent $0.1352000000, remaining $0.0648000000,"
        " soft_limit",
        "agent-daily [writer]: spent $0.0520000000, remaining $0.1480000000, ok",
        "fast         7   1296    354   0.2712000000",
        "smart        5    148     77   0.4560000000",
    ):
        assert line in lines, f"{line!r} missing from:\n{out}"
    assert "resets at " in out
    assert "T00:00:00-0" in out  # midnight in New York, EST or EDT
    # By day: yesterday's records from the earlier run, then today's calls.
    days = lines[lines.index("day        calls           cost") + 1 :]
    assert len(days) == 2
    assert days[0].endswith("     2   0.5400000000")
    assert days[1].endswith("    10   0.1872000000")


def run_example(
    script: str, *args: str, check: bool = True, **env_vars: str
) -> subprocess.CompletedProcess[str]:
    """Run ``examples/<script>`` in a fresh process, offline: no provider
    keys or palyra settings from this environment, and a dead proxy for
    anything but loopback."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "ANTHROPIC_", "PALYRA_", "PYTHON_KEYRING"))
    }
    # The test's own palyra home (the usage ledger goes there), never the user's.
    env["PALYRA_HOME"] = os.environ["PALYRA_HOME"]
    dead = "http://127.0.0.1:9"
    env.update(HTTP_PROXY=dead, HTTPS_PROXY=dead, ALL_PROXY=dead)
    env.update(NO_PROXY="127.0.0.1,localhost", PYTHONWARNINGS="error")
    env.update(env_vars)
    return subprocess.run(
        [sys.executable, f"examples/{script}", *args],
        check=check,
        capture_output=True,
        timeout=120,
        cwd=ROOT,
        env=env,
        text=True,
    )


AUTH_API_KEY_LINES = (
    "1. A wrong key is refused before anything is stored",
    "AuthenticationError (HTTP 401): provider 'demo' refused the key; nothing was"
    " stored",
    "profiles: []",
    "connected: demo-work (provider=demo, kind=api_key)",
    "the server saw: ['GET /v1/models 401', 'GET /v1/models 200']",
    "demo-work: health=static, scope=global, name=work",
    "auth_profiles.json: mode 600, holds the key: False",
    "assistant: echo: Hello through a profile",
    "with the old key: AuthenticationError (HTTP 401)",
    "connected again as demo-work: same created_at: True, updated_at moved on: True",
    "with the new key: echo: Hello through a profile",
    "the vault still holds the key: False",
    "a chat now: CredentialError: no credential configured",
)


def _flat(text: str) -> str:
    """Printed text with its wrapping undone."""
    return " ".join(text.split())


def test_auth_api_key_with_memory_secrets() -> None:
    """auth_api_key.py connects, uses, rotates and revokes a key (secrets in
    memory, as PALYRA_EXAMPLE_MEMORY=1 asks)."""
    result = run_example("auth_api_key.py", PALYRA_EXAMPLE_MEMORY="1")
    assert result.stderr == ""
    out = _flat(result.stdout)
    assert "secrets: in memory" in out
    for line in AUTH_API_KEY_LINES:
        assert line in out, f"{line!r} missing from:\n{result.stdout}"
    assert "memory holds it (under 'demo-work:api_key'): True" in out
    assert out.count("profiles: []") == 2  # before connecting, after revoking
    assert "sk-demo-" not in out  # the keys are never printed


def test_auth_api_key_memory_flag() -> None:
    """--memory does what PALYRA_EXAMPLE_MEMORY=1 does."""
    result = run_example("auth_api_key.py", "--memory")
    assert "secrets: in memory" in result.stdout
    assert "the vault still holds the key: False" in result.stdout


def test_auth_api_key_stops_on_an_unusable_keyring() -> None:
    """Without --memory and with no usable keyring, the example stops with
    palyra's VaultError: it never falls back to memory by itself."""
    result = run_example(
        "auth_api_key.py",
        check=False,
        PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
    )
    assert result.returncode == 1, result.stderr
    out = _flat(result.stdout)
    assert "secrets: in the OS keyring" in out
    assert "The OS keyring cannot be used here:" in out
    assert "the OS keyring (keyring.backends.fail.Keyring) could not" in out
    assert "Run again with --memory" in out
    assert "connected:" not in out


def _secret_service() -> Any:
    """The real Secret Service backend, if one can be used here."""
    try:
        from keyring.backends import SecretService

        store = SecretService.Keyring()
        store.set_password("palyra-test", "probe", "probe")
        store.delete_password("palyra-test", "probe")
    except Exception as exc:  # no D-Bus session, no daemon, a locked keyring
        pytest.skip(f"no Secret Service can be used here ({type(exc).__name__})")
    return store


def test_auth_api_key_with_the_real_keyring() -> None:
    """auth_api_key.py with the OS keyring (the Secret Service): the key is
    filed under service 'palyra', user 'demo-work:api_key', and gone after."""
    store = _secret_service()
    result = run_example(
        "auth_api_key.py",
        PYTHON_KEYRING_BACKEND="keyring.backends.SecretService.Keyring",
    )
    assert result.stderr == ""
    out = _flat(result.stdout)
    assert "secrets: in the OS keyring" in out
    for line in AUTH_API_KEY_LINES:
        assert line in out, f"{line!r} missing from:\n{result.stdout}"
    assert (
        "the OS keyring holds it (service 'palyra', user 'demo-work:api_key'): True"
        in out
    )
    assert store.get_password("palyra", "demo-work:api_key") is None


def test_oauth_login() -> None:
    """oauth_login.py signs in through its loopback authorization server,
    chats, refreshes (by hand, before a call, after a 401) and revokes."""
    result = run_example("oauth_login.py", PALYRA_EXAMPLE_MEMORY="1")
    assert result.stderr == ""
    out = result.stdout
    flat = _flat(out)
    for line in (
        "tokens: in memory",
        "the authorize URL carries: response_type, client_id, redirect_uri, scope,"
        " code_challenge, code_challenge_method, state",
        "code_challenge_method=S256, redirect_uri=http://127.0.0.1:<a free port>"
        "/callback",
        "the browser was sent back to /callback and shown: Signed in: palyra is"
        " signed in to demo.",
        "server: authorize: code issued",
        "server: token: code exchanged (PKCE verifier checked)",
        "profile: demo-me, kind=oauth, health=ok,",
        "scopes=['chat', 'offline_access'], client_id=demo-app,",
        "the access token expires in 60 minutes",
        "the vault holds an access and a refresh token: True",
        "new access token: True, new refresh token stored: True",
        "the old refresh token still works: False",
        "the old access token still works: False",
        "health: expiring (2 minutes left)",
        "server: revoke: refresh token and its access tokens",
        "the last access token still works: False",
        "the vault holds a token: False",
        "a chat now: CredentialError: no credential configured",
    ):
        assert line in flat, f"{line!r} missing from:\n{out}"
    # What the server saw, step by step: the refreshes came where promised.
    server = {
        step.split(".", 1)[0]: [
            line.strip() for line in step.splitlines() if "server:" in line
        ]
        for step in out.split("\n\n")
    }
    served = "server: chat: served (a live access token)"
    refreshed = "server: token: refreshed (refresh token rotated)"
    assert server["2"] == [served]  # no refresh needed
    assert server["3"] == [refreshed]  # client.auth.refresh
    assert server["4"] == [refreshed, served]  # before the call
    assert server["5"] == [  # refused, refreshed once, made again
        "server: chat: 401, the access token is not live",
        refreshed,
        served,
    ]
    assert server["6"] == ["server: revoke: refresh token and its access tokens"]
    assert out.count("assistant: echo: Hello with an OAuth token") == 3


def test_budgets_runs_offline_in_a_fresh_process() -> None:
    """budgets.py needs no key and no network; stderr holds only palyra's
    warnings for the alerts it printed."""
    result = run_example("budgets.py")
    assert "BLOCKED before it was sent:" in result.stdout
    warnings = result.stderr.splitlines()
    assert len(warnings) == 3
    assert all(line.startswith("budget 'agent-daily' (usd agent=") for line in warnings)


@pytest.mark.parametrize(
    ("name", "promised"),
    [
        (
            "streaming",
            [
                "chunks: 'Stream this sentence back to me word by word'",
                "async: True",
                "ledger: ['ok', 'ok', 'cancelled']",
            ],
        ),
        (
            "tools",
            [
                "finish: tool_calls",
                "the model calls weather({'city': 'Prague'})",
                "answer: It is 21 °C and clear in Prague.",
            ],
        ),
        ("vision", ["eyes: What is in it?", "text-only refused: vision"]),
        ("embeddings", ["3 vectors of", "nearest: 'the cat sat on the mat' (1.000)"]),
        ("transcription", ["text: [", "meeting.wav]", "segments: 1"]),
        (
            "usage_report",
            ["by model:", "research  2 calls", "costliest: research smart"],
        ),
        (
            "serve_anthropic_sdk",
            [
                "message: Say hello to the Anthropic SDK | stop: end_turn",
                "count_tokens:",
                "ledger: [('claude-sdk', 'ok'), ('claude-sdk', 'ok')]",
            ],
        ),
        (
            "testing_app",
            ["scripted reply: ok", "failover: served by gpt-4o after 2 attempts"],
        ),
        (
            "call_events",
            [
                "docs: start -> end (17 tokens, $0.0000220000,",
                "docs: start -> first_token -> end (",
                "docs: start -> first_token -> cancelled (",
                "greedy: start -> error (BudgetExceededError)",
                "delivered 10 of 10, dropped 0",
            ],
        ),
        (
            "otel_traces",
            [
                "handle request [",
                "\n  chat bot [",
                "\n    palyra.attempt [",
                "'palyra.agent': 'docs', 'palyra.ttft_ms': ",
                "'error.type': 'BudgetExceededError', 'palyra.budget.policy': 'tiny'}",
                "  palyra.attempt [0.0 ms] {'outcome': 'skipped'}",
            ],
        ),
    ],
)
def test_capability_examples(
    name: str, promised: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Each capability's script prints what it promises."""
    load_example(name).main()
    out = capsys.readouterr().out
    for line in promised:
        assert line in out, (name, line, out)


def test_examples_readme_lists_every_script() -> None:
    listed = (EXAMPLES / "README.md").read_text()
    for script in sorted(EXAMPLES.glob("*.py")):
        assert f"`{script.name}`" in listed, script.name


def test_scheduled_agent(capsys: pytest.CaptureFixture[str]) -> None:
    """scheduled_agent.py: three mornings on a manual clock; the report runs
    as its agent until the agent's own budget refuses it, a failing job is
    retried and recorded, and another agent is not held back."""
    load_example("scheduled_agent").main()
    out = capsys.readouterr().out
    assert "report for Mon 01 Jun by reports" in out
    assert "report for Tue 02 Jun by reports" in out
    assert "daily_report: error (BudgetExceededError, attempt 1)" in out
    assert out.count("flaky: error (RuntimeError, attempt 2)") == 3
    assert "another agent is not held back: support" in out
    assert "daily_report runs, newest first: ['error', 'ok', 'ok']" in out


def test_scheduled_agent_runs_offline_in_a_fresh_process() -> None:
    """No key, no network, no thread left: the process exits by itself."""
    result = run_example("scheduled_agent.py")
    assert "spent: {'reports': '0.0047000000'" in result.stdout


def test_routing(capsys: pytest.CaptureFixture[str]) -> None:
    """routing.py: decisions without calls, dry-run and enforced calls, and
    the savings they add up to, from the ledger."""
    load_example("routing").main()
    out = capsys.readouterr().out
    lines = out.splitlines()
    for line in (
        "a short question: score 0.00, tier small -> mini",
        "a photo: score 0.21, tier small -> vision",
        "  mini      ~$0.000270  no_vision",
        "a short question: served by core, routing chose mini",
        "a sentiment label: served by mini (asked for core)",
        "a photo: served by vision (asked for core)",
        "a code fix: served by core (asked for core)",
    ):
        assert line in lines, line
    dry = next(line for line in lines if line.startswith("dry_run: "))
    enforced = next(line for line in lines if line.startswith("enforced: "))
    assert dry.startswith("dry_run: 5 calls (0 only routing could serve)")
    assert enforced.startswith("enforced: 6 calls (1 only routing could serve)")
    assert "saved $0.0001496000 (5%)" in dry


def test_routing_runs_offline_in_a_fresh_process() -> None:
    """routing.py needs no key and no network, and warns about nothing."""
    result = run_example("routing.py")
    assert "== what routing saved" in result.stdout
    assert result.stderr == ""


def test_serve_openai_sdk(capsys: pytest.CaptureFixture[str]) -> None:
    """serve_openai_sdk.py: uvicorn on loopback, the OpenAI SDK calls it,
    and the ledger says the calls ran as the token's agent."""
    load_example("serve_openai_sdk").main()
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "chat: Say hello to the SDK"
    assert out[2].endswith("'Say hello to the SDK'")
    assert out[3] == "models: ['assistant']"
    row = "('sdk-example', 'assistant', 'ok')"
    assert out[4] == f"ledger: [{row}, {row}]"


def test_console_admin(capsys: pytest.CaptureFixture[str]) -> None:
    """console_admin.py: the console under uvicorn, signed in over HTTP,
    CSRF refused then given, the overview page's figures."""
    load_example("console_admin").main([])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("admin token tok_")
    assert out[0].endswith("with scopes ['admin']")
    assert out[1:5] == [
        "session cookie: True",
        "calls by agent: [('example', 3)]",
        "without CSRF: 403",
        "budget added: daily",
    ]
    assert out[5] == (
        "overview shows: ['Spend today', 'Spend this month', 'Calls this month',"
        " 'Error rate']"
    )


def test_serve_openai_sdk_runs_in_a_fresh_process() -> None:
    result = run_example("serve_openai_sdk.py")
    assert "models: ['assistant']" in result.stdout
    assert result.stderr == ""
