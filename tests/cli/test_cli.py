"""The ``palyra`` command, driven through its real entry point in a
subprocess (issue 15): exit codes, stdout and stderr, piped stdin, ``--json``
parsed back, the interactive chat through a pseudo-terminal, and no secret in
argv, the output or palyra's files after ``auth connect``."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.conftest import FAKE_KEY
from tests.upstream import Upstream

ROOT = Path(__file__).resolve().parents[2]


def env_for(home: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "ANTHROPIC_", "PALYRA_", "PYTHON_KEYRING"))
    }
    env.update(PALYRA_HOME=str(home), PYTHONPATH=str(ROOT), **extra)
    return env


def palyra(
    home: Path, *args: str, stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "palyra", *args],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        env=env_for(home, **env),
        timeout=60,
        check=False,
    )


def test_help_lists_every_command_and_each_has_examples(tmp_path: Path) -> None:
    done = palyra(tmp_path, "--help")
    assert done.returncode == 0
    for command in ("chat", "models", "route", "auth", "tokens", "usage", "budgets",
                    "jobs", "config", "doctor", "serve"):  # fmt: skip
        assert command in done.stdout
        sub = palyra(tmp_path, command, "--help")
        assert sub.returncode == 0, command
        assert "examples:" in sub.stdout, command


def test_second_level_commands_have_examples(tmp_path: Path) -> None:
    for words in (["auth", "connect"], ["auth", "list"], ["tokens", "create"],
                  ["jobs", "run"], ["config", "show"]):  # fmt: skip
        done = palyra(tmp_path, *words, "--help")
        assert done.returncode == 0, words
        assert "examples:" in done.stdout, words


def test_bad_values_are_usage_errors(tmp_path: Path) -> None:
    for words in (["usage", "--by", "bogus"], ["usage", "--since", "999999w"],
                  ["tokens", "create", "x", "--days", "nan"],
                  ["chat", "hi", "--agent=-x"]):  # fmt: skip
        done = palyra(tmp_path, *words)
        assert done.returncode == 2, (words, done.stderr)
        assert "Traceback" not in done.stderr
    binary = subprocess.run(
        [sys.executable, "-m", "palyra", "chat"], input=b"hi \xff", capture_output=True,
        env=env_for(tmp_path), timeout=60, check=False,
    )  # fmt: skip
    assert binary.returncode == 2
    assert b"not UTF-8" in binary.stderr


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert palyra(tmp_path, "bogus").returncode == 2
    empty = palyra(tmp_path, "chat", "   ")
    assert empty.returncode == 2
    assert (
        empty.stderr.strip()
        == "palyra chat: the prompt is empty (give one, or pipe it in)"
    )
    assert palyra(tmp_path, "usage", "--since", "last tuesday").returncode == 2
    missing = palyra(tmp_path, "--config", str(tmp_path / "nope.toml"), "models")
    assert missing.returncode == 2
    assert "nope.toml" in missing.stderr


def test_chat_streams_the_answer_and_puts_the_usage_on_stderr(tmp_path: Path) -> None:
    done = palyra(tmp_path, "chat", "hello there")
    assert done.returncode == 0
    assert done.stdout == "hello there\n"  # the deterministic provider echoes
    assert done.stderr.startswith("[deterministic-chat via deterministic: ")
    piped = palyra(tmp_path, "chat", "--system", "be brief", stdin="from a pipe\n")
    assert piped.returncode == 0
    assert piped.stdout.strip() == "from a pipe"


def test_json_output_parses_back(tmp_path: Path) -> None:
    reply = json.loads(
        palyra(tmp_path, "chat", "hi", "--json", "--agent", "cli").stdout
    )
    assert reply["choices"][0]["message"]["content"] == "hi"
    assert reply["palyra"]["agent"] == "cli"
    models = json.loads(palyra(tmp_path, "models", "--json").stdout)
    assert {m["id"] for m in models} == {
        "deterministic-chat",
        "deterministic-embeddings",
    }
    usage = json.loads(palyra(tmp_path, "usage", "--by", "agent", "--json").stdout)
    assert usage == [
        {"agent": "cli", "calls": 1, "input": usage[0]["input"], "cached": 0,
         "output": usage[0]["output"], "cost_usd": None, "unpriced": 1}
    ]  # fmt: skip
    unnamed = json.loads(palyra(tmp_path, "usage", "--by", "session", "--json").stdout)
    assert unnamed[0]["session"] is None  # null, not the table's "-"
    rows = list(csv.reader(io.StringIO(palyra(tmp_path, "usage", "--csv").stdout)))
    assert rows[0][:2] == ["model", "calls"]
    assert rows[1][:2] == ["deterministic-chat", "1"]
    decision = json.loads(palyra(tmp_path, "route", "Prove it", "--json").stdout)
    assert decision["serves"] == "deterministic-chat"


def test_an_operation_error_is_one_line_and_exit_1(tmp_path: Path) -> None:
    done = palyra(tmp_path, "chat", "hi", "-m", "no-such-model")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("palyra chat: ModelNotFoundError: ")
    debug = palyra(tmp_path, "--debug", "chat", "hi", "-m", "no-such-model")
    assert "Traceback (most recent call last)" in debug.stderr


def test_tokens_are_shown_once_and_listed_without_the_secret(tmp_path: Path) -> None:
    made = palyra(
        tmp_path, "tokens", "create", "ci", "--scope", "chat", "--rate-limit", "60"
    )
    assert made.returncode == 0
    secret = made.stdout.strip()
    assert secret.startswith("pk-palyra-")
    listed = palyra(tmp_path, "tokens", "list", "--json")
    tokens = json.loads(listed.stdout)
    assert [(t["name"], t["scopes"], t["per minute"]) for t in tokens] == [
        ("ci", "chat", 60)
    ]
    assert secret not in listed.stdout
    assert palyra(tmp_path, "tokens", "revoke", tokens[0]["token"]).returncode == 0
    assert (
        json.loads(palyra(tmp_path, "tokens", "list", "--json").stdout)[0]["state"]
        == "revoked"
    )
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes()


def test_config_check_names_every_error_and_show_hides_secrets(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[[providers]]\nid = "up"\nkind = "openai"\nbase_url = "ftp://x"\n'
        '[[models]]\nid = "m"\nprovider = "up"\ncontext_window = -1\n'
        '[[jobs]]\nkind = "budget_alerts"\ncron = "99 * * * *"\n'
    )
    done = palyra(tmp_path, "config", "check", str(bad))
    assert done.returncode == 1
    assert "providers[0].base_url" in done.stderr
    assert "models[0].context_window" in done.stderr
    good = tmp_path / "good.toml"
    good.write_text(
        '[[providers]]\nid = "up"\nkind = "openai"\nbase_url = "http://127.0.0.1:9/v1"\n'
        'api_key = "sk-inline-0123456789abcdef"\n'
        '[[models]]\nid = "m"\nprovider = "up"\n'
        '[[jobs]]\nkind = "budget_alerts"\ncron = "99 * * * *"\n'
    )
    cron = palyra(tmp_path, "config", "check", str(good))
    assert cron.returncode == 1
    assert "jobs[0].cron" in cron.stderr
    good.write_text(
        good.read_text().replace('cron = "99 * * * *"', 'cron = "*/5 * * * *"')
    )
    assert palyra(tmp_path, "config", "check", str(good)).returncode == 0
    shown = palyra(tmp_path, "--config", str(good), "config", "show")
    assert shown.returncode == 0
    assert "sk-inline" not in shown.stdout + shown.stderr
    assert "inline key" in json.loads(shown.stdout)["providers"][0]["api_key"]


def test_jobs_list_next_and_run(tmp_path: Path) -> None:
    config = tmp_path / "jobs.toml"
    config.write_text('[[jobs]]\nkind = "budget_alerts"\nevery = 60\n')
    listed = json.loads(
        palyra(tmp_path, "--config", str(config), "jobs", "list", "--json").stdout
    )
    assert [j["job"] for j in listed] == ["budget_alerts"]
    following = palyra(
        tmp_path, "--config", str(config), "jobs", "next", "budget_alerts", "-n", "2"
    )
    assert len(following.stdout.splitlines()) == 2
    ran = palyra(tmp_path, "--config", str(config), "jobs", "run", "budget_alerts")
    assert ran.returncode == 0
    assert ran.stdout.startswith("budget_alerts: ok in ")
    missing = palyra(tmp_path, "--config", str(config), "jobs", "run", "nope")
    assert missing.returncode == 1
    assert "JobNotFoundError" in missing.stderr


def test_doctor_reports_each_check(tmp_path: Path) -> None:
    done = palyra(
        tmp_path, "doctor", PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring"
    )
    assert done.returncode == 1  # no keyring backend: a finding
    assert "FAIL keyring: no usable backend" in done.stdout
    assert "ok   ledger: " in done.stdout
    assert "ok   home: " in done.stdout


class Terminal:
    """A child process on a pseudo-terminal: typing, and reading what it shows."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child
            # As a shell starts a command: ^C's signal at its default and not
            # blocked, whatever the test process did to its own (an ignored
            # or blocked SIGINT is inherited through exec).
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
            command = [sys.executable, "-m", "palyra", *args]
            os.execve(sys.executable, command, env)  # noqa: S606 - no shell wanted
        self.seen = ""

    def read_until(self, text: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"never showed {text!r}; showed {self.seen!r}")
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:  # the child closed the terminal
                    break
                self.seen += chunk.decode(errors="replace")
        assert text in self.seen, self.seen
        return self.seen

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def wait(self, timeout: float = 20.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
            try:
                ready, _, _ = select.select([self.fd], [], [], 0.05)
                if ready:
                    self.seen += os.read(self.fd, 4096).decode(errors="replace")
            except OSError:
                time.sleep(0.05)
        os.kill(self.pid, 9)
        raise AssertionError(f"still running; showed {self.seen!r}")


def test_the_interactive_chat_keeps_the_conversation(tmp_path: Path) -> None:
    term = Terminal(["chat"], env_for(tmp_path))
    term.read_until("> ")
    term.type("first question\r")
    term.read_until("first question\r\n")
    term.read_until("[deterministic-chat via deterministic")
    term.type("/model no-such-model\r")
    term.read_until("no model 'no-such-model'")
    term.type("/model deterministic-chat\r")
    term.read_until("model: deterministic-chat")
    term.type("second question\r")
    term.read_until("second question\r\n")
    term.type("/exit\r")
    assert term.wait() == 0
    with_history = json.loads(palyra(tmp_path, "usage", "--json").stdout)
    assert with_history[0]["calls"] == 2


def test_ctrl_c_exits_130(tmp_path: Path) -> None:
    term = Terminal(["chat"], env_for(tmp_path))
    term.read_until("> ")
    # As a person would: not in the microseconds between readline showing
    # the prompt and waiting for keys, where CPython's readline can miss the
    # signal (seen once on a loaded machine: it waited on).
    time.sleep(0.3)
    term.type("\x03")
    assert term.wait() == 130


def test_auth_connect_reads_the_key_without_echo_and_keeps_it_out_of_files(
    tmp_path: Path,
) -> None:
    home, vault = tmp_path / "home", tmp_path / "vault.json"
    with Upstream(api_key=FAKE_KEY) as upstream:
        config = tmp_path / "up.toml"
        config.write_text(
            '[[providers]]\nid = "up"\nkind = "openai"\n'
            f'base_url = "{upstream.base_url}"\n'
            '[[models]]\nid = "m"\nprovider = "up"\n'
        )
        env = env_for(
            home,
            PYTHON_KEYRING_BACKEND="tests.auth.filekeyring.FileKeyring",
            PALYRA_TEST_KEYRING=str(vault),
        )
        args = ["--config", str(config), "auth", "connect", "up"]
        term = Terminal(args, env)
        term.read_until("(not echoed): ")
        term.type(FAKE_KEY + "\r")
        assert term.wait() == 0
        assert "connected up-" in term.seen
        assert FAKE_KEY not in term.seen  # not echoed, not printed
        assert FAKE_KEY not in " ".join(args)
        command = [sys.executable, "-m", "palyra", "--config", str(config)]
        listed = subprocess.run(
            [*command, "auth", "list", "--json"],
            capture_output=True, text=True, env=env, timeout=60, check=True,
        )  # fmt: skip
        profiles: list[dict[str, Any]] = json.loads(listed.stdout)
        assert [p["provider"] for p in profiles] == ["up"]
        assert FAKE_KEY not in listed.stdout
        chat = subprocess.run(
            [sys.executable, "-m", "palyra", "--config", str(config), "chat", "hi"],
            capture_output=True, text=True, env=env, timeout=60, check=False,
        )  # fmt: skip
        assert chat.returncode == 0, chat.stderr
    for path in home.rglob("*"):
        if path.is_file():
            assert FAKE_KEY.encode() not in path.read_bytes(), path
    assert FAKE_KEY in vault.read_text()  # where it belongs: the vault
