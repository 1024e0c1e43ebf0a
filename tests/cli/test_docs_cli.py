"""Every ```console block of docs/*.md and README.md runs (issue 15): each
``$ palyra ...`` line through the real entry point, offline (the
deterministic provider, a temporary home shared by the page's blocks, its
```toml files written first), and what the block shows after it must be what
the command printed (``...`` matches anything; whitespace is free). A block
after ``<!-- notest`` is not run."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.test_cli import env_for
from tests.test_docs import PAGES, ROOT, _matches, blocks, write_config_files


def commands(code: str) -> list[tuple[str, list[str]]]:
    """The block's ``$`` lines, each with the lines shown after it."""
    found: list[tuple[str, list[str]]] = []
    for line in code.splitlines():
        if line.startswith("$ "):
            found.append((line[2:], []))
        elif found and line.strip():
            found[-1][1].append(line)
    return found


def _run(line: str, cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    stdin = None
    if " | palyra " in f" {line}":  # echo "..." | palyra ...
        before, after = line.split("| palyra ", 1)
        stdin = shlex.split(before)[1] + "\n"
        line = "palyra " + after
    words = shlex.split(line, comments=True)
    assert words[0] == "palyra", line
    return subprocess.run(
        [sys.executable, "-m", "palyra", *words[1:]],
        input=stdin or "", capture_output=True, text=True, cwd=cwd,
        env=env_for(home), timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    "page", [pytest.param(p, id=p.relative_to(ROOT).as_posix()) for p in PAGES]
)
def test_console_blocks_run(page: Path, tmp_path: Path) -> None:
    runnable = [b for b in blocks(page) if b.lang == "console" and not b.skip]
    if not runnable:
        pytest.skip(f"{page.name} has no runnable console blocks")
    write_config_files(page, tmp_path)
    home = tmp_path / "home"
    for block in runnable:
        for line, shown in commands(block.code):
            done = _run(line, tmp_path, home)
            where = f"{page.relative_to(ROOT)}:{block.line}: $ {line}"
            assert done.returncode == 0, f"{where}\n{done.stderr}"
            if shown:
                printed = done.stdout.splitlines()
                assert _matches(shown, printed), (
                    f"{where}\nthe page shows\n" + "\n".join(shown)
                    + "\nbut it printed\n" + done.stdout
                )  # fmt: skip
