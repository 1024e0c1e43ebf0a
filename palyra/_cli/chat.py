"""``palyra chat``: one prompt streamed to the terminal (from the argument,
or stdin when piped), its usage and cost on stderr after; with no prompt on a
terminal, a session that keeps the conversation (``/model NAME``,
``/exit``)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

from .dispatch import client_from
from .output import CommandError, emit_json, waiting

__all__ = ["run"]

_HELP = "commands: /model NAME (switch), /model (show), /reset, /exit"


def run(args: argparse.Namespace) -> int:
    """Chat."""
    prompt = args.prompt
    if prompt is None and not sys.stdin.isatty():
        try:
            prompt = sys.stdin.buffer.read().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CommandError(
                f"stdin is not UTF-8 text (byte {exc.start})", 2
            ) from None
    if prompt is None:
        with client_from(args) as client:
            return _session(client, args)
    if not prompt.strip():
        raise CommandError("the prompt is empty (give one, or pipe it in)", 2)
    with client_from(args) as client:
        messages = [*_start(args), {"role": "user", "content": prompt}]
        if args.json:
            reply = client.chat(messages, model=args.model, agent=args.agent)
            emit_json(reply.model_dump(mode="json", exclude_none=True))
            return 0
        _answer(client, messages, args.model, args.agent)
    return 0


def _start(args: argparse.Namespace) -> list[dict[str, Any]]:
    return [{"role": "system", "content": args.system}] if args.system else []


def _answer(
    client: Any, messages: list[dict[str, Any]], model: str | None, agent: str | None
) -> str:
    """Stream one answer to stdout; its usage line to stderr; the text."""
    parts: list[str] = []
    with waiting("waiting for the model"):  # until the first chunk (a terminal only)
        opened = client.stream(messages, model=model, agent=agent)
    with opened as stream:
        for chunk in stream:
            for choice in chunk.choices:
                text = choice.delta.content
                if text:
                    parts.append(text)
                    sys.stdout.write(text)
                    sys.stdout.flush()
        info = stream.palyra
    sys.stdout.write("\n")
    sys.stdout.flush()
    print(_usage_line(info), file=sys.stderr)
    return "".join(parts)


def _usage_line(info: Any) -> str:
    usage, cost = info.usage, info.cost
    tokens = "usage unknown"
    if usage is not None:
        prompt = usage.input_uncached + usage.cache_read + usage.cache_write
        tokens = f"{prompt} in, {usage.output} out"
        if info.usage_estimated:
            tokens += " (estimated)"
    price = "unpriced"
    if cost is not None and not cost.unpriced and cost.total is not None:
        price = f"${cost.total.normalize():f}"
    took = f"{info.latency_ms:.0f} ms"
    return f"[{info.model} via {info.provider}: {tokens}, {price}, {took}]"


def _session(client: Any, args: argparse.Namespace) -> int:
    with contextlib.suppress(ImportError):  # line editing and recall, where it exists
        import readline  # noqa: F401
    model = args.model
    known = {m.id for m in client.models()} | {
        a for m in client.models() for a in m.aliases
    }
    history = _start(args)
    print(f"palyra chat ({model or 'default model'}); {_HELP}", file=sys.stderr)
    while True:
        try:
            line = input("> ")
        except EOFError:
            print("", file=sys.stderr)
            return 0
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            return 0
        if text == "/reset":
            history = _start(args)
            continue
        command, _, name = text.partition(" ")
        if command == "/model":
            model = _switch(model, name.strip(), known)
            continue
        if text.startswith("/"):
            print(_HELP, file=sys.stderr)
            continue
        history.append({"role": "user", "content": line})
        try:
            answer = _answer(client, history, model, args.agent)
        except KeyboardInterrupt:  # stop this answer, keep the session
            history.pop()
            print("\n(interrupted)", file=sys.stderr)
            continue
        except Exception as exc:  # the session goes on after a failed call
            history.pop()
            print(f"palyra chat: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        history.append({"role": "assistant", "content": answer})


def _switch(model: str | None, name: str, known: set[str]) -> str | None:
    """``/model NAME``: the new model, if the registry has it (else the old)."""
    if name and name not in known:
        print(f"no model {name!r}; the registry has {', '.join(sorted(known))}",
              file=sys.stderr)  # fmt: skip
    elif name:
        model = name
    print(f"model: {model or 'default model'}", file=sys.stderr)
    return model
