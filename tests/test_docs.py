"""Every ```python block in docs/*.md and README.md runs, offline.

Blocks of one page run in order in one namespace, so a later block can use the
names an earlier one defined. Each page runs in its own temporary directory; a
```toml block whose first line is a comment naming a ``.toml`` file (``#
palyra.toml``) is written there first, so ``Palyra.from_file("palyra.toml")``
works as shown.

A block is not run when its fence says ``python notest`` or when the line
before it is an HTML comment starting with ``<!-- notest`` (mkdocs' fences do
not allow extra words after the language, so the docs pages use the comment).
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import re
import textwrap
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import FAKE_KEY

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [*sorted((ROOT / "docs").glob("*.md")), README]

_FENCE = re.compile(
    r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n`]*)\n"
    r"(?P<body>.*?)"
    r"^(?P=indent)(?P=fence)[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
_CONFIG_NAME = re.compile(r"^#\s*(?P<name>[\w.-]+\.toml)\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    lang: str
    code: str
    line: int
    skip: bool


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of a page, in order."""
    text = page.read_text(encoding="utf-8")
    found = []
    for match in _FENCE.finditer(text):
        info = match["info"].strip()
        words = info.replace("{", " ").replace("}", " ").replace(".", " ").split()
        before = text[: match.start()].rstrip().rsplit("\n", 1)[-1].strip()
        found.append(
            Block(
                lang=words[0] if words else "",
                code=textwrap.dedent(match["body"]),
                line=text.count("\n", 0, match.start()) + 2,
                skip="notest" in words or before.startswith("<!-- notest"),
            )
        )
    return found


def write_config_files(page: Path, directory: Path) -> None:
    """Write each ```toml block that names its file to ``directory``."""
    for block in blocks(page):
        if block.lang != "toml":
            continue
        first = block.code.split("\n", 1)[0]
        named = _CONFIG_NAME.match(first)
        if named:
            (directory / named["name"]).write_text(block.code, encoding="utf-8")


def openai_upstream(request: httpx.Request) -> httpx.Response:
    """A minimal OpenAI API: embeddings, and chat (JSON or SSE) echoing the prompt."""
    body = json.loads(request.content)
    assert request.headers["authorization"] == f"Bearer {FAKE_KEY}"
    if request.url.path.endswith("/embeddings"):
        inputs = [body["input"]] if isinstance(body["input"], str) else body["input"]
        size = body.get("dimensions", 8)
        data = [
            {"object": "embedding", "index": i, "embedding": [0.5] * size}
            for i in range(len(inputs))
        ]
        return httpx.Response(
            200, json={"object": "list", "model": body["model"], "data": data}
        )
    text = str(body["messages"][-1]["content"])
    base: dict[str, Any] = {"id": "chatcmpl-doc", "created": 1, "model": body["model"]}
    if not body.get("stream"):
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": "stop",
        }
        return httpx.Response(
            200, json={**base, "object": "chat.completion", "choices": [choice]}
        )
    events = [
        {"index": 0, "delta": {"content": word + " "}, "finish_reason": None}
        for word in text.split()
    ]
    events.append({"index": 0, "delta": {}, "finish_reason": "stop"})
    sse = "".join(
        f"data: {json.dumps({**base, 'object': 'chat.completion.chunk', 'choices': [e]})}\n\n"  # noqa: E501
        for e in events
    )
    return httpx.Response(
        200,
        headers={"content-type": "text/event-stream"},
        text=sse + "data: [DONE]\n\n",
    )


def serve_real_providers_from_a_mock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients built without a transport talk to `openai_upstream` instead.

    The README's examples call OpenAI through a config file and cannot take a
    transport argument; this swaps palyra's own network transport for a mock.
    """
    import palyra._core.connect as connect

    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    mock = httpx.MockTransport(openai_upstream)
    monkeypatch.setattr(
        connect,
        "client_options",
        lambda guard, limits, asynchronous: {"transport": mock},
    )


@pytest.mark.parametrize(
    "page", [pytest.param(p, id=p.relative_to(ROOT).as_posix()) for p in PAGES]
)
def test_page_code_blocks_run(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each page's python blocks run in order, sharing one namespace."""
    runnable = [b for b in blocks(page) if b.lang == "python" and not b.skip]
    if not runnable:
        pytest.skip(f"{page.name} has no runnable python blocks")
    monkeypatch.chdir(tmp_path)
    write_config_files(page, tmp_path)
    if page == README:
        serve_real_providers_from_a_mock(monkeypatch)
    namespace: dict[str, Any] = {"__name__": f"docs_{page.stem}"}
    for block in runnable:
        where = f"{page.relative_to(ROOT)}:{block.line}"
        run_checking_output(block.code, where, namespace)


def run_checking_output(code: str, where: str, namespace: dict[str, Any]) -> None:
    """Run a block statement by statement; what a statement prints must match
    the output its comments claim (see `claimed_output`)."""
    tree = ast.parse(code)
    lines = code.splitlines()
    comments = _comments(code)
    for stmt in tree.body:
        claimed = claimed_output(stmt, lines, comments)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            module = ast.Module(body=[stmt], type_ignores=[])
            exec(compile(module, where, "exec"), namespace)  # noqa: S102
        if claimed is not None:
            printed = [line.rstrip() for line in out.getvalue().splitlines()]
            line = int(where.rsplit(":", 1)[1]) + stmt.lineno - 1
            assert _matches(claimed, printed), (
                f"{where.rsplit(':', 1)[0]}:{line}: the comments say\n"
                + "\n".join(claimed)
                + "\nbut it printed\n"
                + "\n".join(printed)
            )


def claimed_output(
    stmt: ast.stmt, lines: list[str], comments: dict[int, tuple[int, str]]
) -> list[str] | None:
    """The output a statement that prints claims: a comment at the end of a lone
    ``print(...)``, or the unindented comment lines right after the statement.
    ``...`` in a claimed line matches anything."""
    if not any(
        isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print"
        for node in ast.walk(stmt)
    ):
        return None
    assert stmt.end_lineno is not None
    claimed = []
    inline = comments.get(stmt.end_lineno)
    lone_print = isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)
    if inline is not None and inline[0] > 0 and lone_print:
        claimed.append(inline[1])
    row = stmt.end_lineno + 1
    while row in comments and comments[row][0] == 0 and lines[row - 1].startswith("#"):
        claimed.append(comments[row][1])
        row += 1
    return claimed or None


def _comments(code: str) -> dict[int, tuple[int, str]]:
    """Row -> (column, text without '# ') of each comment."""
    found = {}
    for token in tokenize.generate_tokens(io.StringIO(code).readline):
        if token.type == tokenize.COMMENT:
            text = token.string[1:]
            found[token.start[0]] = (
                token.start[1],
                text[1:] if text[:1] == " " else text,
            )
    return found


_NOTE = re.compile(r"\s{2,}\([^)]*\)$")  # "output  (a note for the reader)"


def _matches(claimed: list[str], printed: list[str]) -> bool:
    # Whitespace is free, so long outputs may wrap over several comment lines.
    want = " ".join(_NOTE.sub("", line) for line in claimed).split()
    got = " ".join(printed).split()
    parts = " ".join(want).split("...")
    pattern = ".*".join(re.escape(part.strip()) for part in parts)
    return re.fullmatch(pattern, " ".join(got), re.DOTALL) is not None


def test_claimed_output_is_checked() -> None:
    """A wrong output comment fails the page; ``...`` is a wildcard."""
    namespace: dict[str, Any] = {}
    run_checking_output("print(1 + 1)  # 2\nprint('a', 3)\n# a ...\n", "p:1", namespace)
    with pytest.raises(AssertionError, match="the comments say"):
        run_checking_output("print(2)  # 3\n", "p:1", namespace)
    with pytest.raises(AssertionError, match="but it printed"):
        run_checking_output("for i in (1, 2):\n    print(i)\n# 1\n", "p:1", namespace)
    run_checking_output("x = 1  # not output\nprint(x)\n\n# not output\n", "p:1", {})


def test_fence_parser_reads_skips_and_config_names(tmp_path: Path) -> None:
    """The block parser finds languages, notest markers and config file names."""
    page = tmp_path / "page.md"
    page.write_text(
        "```python\na = 1\n```\n\n"
        "```python notest\nb = 2\n```\n\n"
        "<!-- notest: needs a key -->\n```python\nc = 3\n```\n\n"
        "!!! note\n    ```python\n    d = 4\n    ```\n\n"
        "```toml\n# app.toml\nx = 1\n```\n",
        encoding="utf-8",
    )
    found = blocks(page)
    assert [(b.lang, b.skip) for b in found] == [
        ("python", False),
        ("python", True),
        ("python", True),
        ("python", False),
        ("toml", False),
    ]
    assert found[3].code == "d = 4\n"
    assert found[0].line == 2
    write_config_files(page, tmp_path)
    assert (tmp_path / "app.toml").read_text() == "# app.toml\nx = 1\n"
