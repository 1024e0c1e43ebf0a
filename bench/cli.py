"""Benchmark 15: how fast the ``palyra`` command starts.

Issue 15's target: ``palyra --help`` and ``palyra chat`` on the offline
provider reach their first output within 1.5x the time of
``python -c "import palyra"``.

Each subject runs as a fresh process (``python -m palyra ...``, as the
installed script does, with a temporary home), timed from spawn to its first
byte on stdout; the baseline, ``python -c "import palyra"``, from spawn to
exit. Medians of interleaved rounds.

Bytecode is written and used, as after ``pip install`` (which compiles every
module): with ``PYTHONDONTWRITEBYTECODE`` set, as in some shells and
containers, each run would compile palyra's ~100 modules from source first
(about 130 ms here), which no installed user pays. A warm-up round writes it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from bench._common import banner, median, table

TARGET_RATIO = 1.5
SUBJECTS = {
    "import palyra (baseline)": ["-c", "import palyra"],
    "palyra --help": ["-m", "palyra", "--help"],
    "palyra models": ["-m", "palyra", "models"],
    "palyra chat hi": ["-m", "palyra", "chat", "hi"],
}


def _first_output_s(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    assert child.stdout is not None
    child.stdout.read(1)  # the first byte (EOF for the baseline: its exit)
    took = time.perf_counter() - started
    child.stdout.read()
    child.wait(60)
    assert child.returncode == 0, args
    return took


def run(quick: bool) -> dict[str, Any]:
    """Measure, print the table, return the JSON section."""
    rounds = 5 if quick else 21
    banner(f"cli: spawn to first output, median of {rounds} interleaved rounds")
    env = {**os.environ, "PALYRA_HOME": tempfile.mkdtemp(prefix="palyra-cli-")}
    env.pop("PALYRA_CONFIG", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    for args in SUBJECTS.values():  # warm-up: bytecode written, pages cached
        _first_output_s(args, env)
    times: dict[str, list[float]] = {name: [] for name in SUBJECTS}
    for _ in range(rounds):
        for name, args in SUBJECTS.items():
            times[name].append(_first_output_s(args, env))
    medians = {name: median(found) for name, found in times.items()}
    base = medians["import palyra (baseline)"]
    rows = [[name, value * 1000, value / base] for name, value in medians.items()]
    print(table(["command", "ms", "x import palyra"], rows))
    verdicts = {
        name: "PASS" if medians[name] / base <= TARGET_RATIO else "FAIL"
        for name in ("palyra --help", "palyra chat hi")
    }
    for name, verdict in verdicts.items():
        ratio = medians[name] / base
        print(f"{name}: {ratio:.2f}x the import; target <= {TARGET_RATIO}x: {verdict}")
    return {"ms": {k: v * 1000 for k, v in medians.items()}, "verdicts": verdicts}
