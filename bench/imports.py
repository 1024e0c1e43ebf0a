"""Benchmark 1: ``import palyra`` against the floor its dependencies set.

Each sample is a fresh ``python -I -c`` subprocess that times one statement
with ``time.perf_counter`` and reads its peak RSS with ``resource.getrusage``.
Subjects are interleaved (rotating order each round) so drift and noise hit
them alike; one unrecorded warm-up run per subject compiles the bytecode.

The floor is ``import httpx, pydantic``; the target is ``import palyra`` at
most 1.2 times it. Names load on first use, so the first client pays for the
rest: ``import palyra; palyra.Palyra()`` is measured too, beside what httpx
and pydantic's model machinery cost alone.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import time
from typing import Any

from bench._common import banner, median, percentile, table, verdict

# Label -> the statement timed in a fresh process.
SUBJECTS = {
    "json": "import json",
    "httpx": "import httpx",
    "floor": "import httpx, pydantic",
    "palyra": "import palyra",
    "httpx + BaseModel": "import httpx; from pydantic import BaseModel",
    "palyra + first client": "import palyra; palyra.Palyra()",
}
# Must stay out of sys.modules after `import palyra`: loaded on first use only.
LAZY = (
    "tiktoken",
    "keyring",
    "palyra._providers.openai",
    "palyra._providers.deterministic",
)
TARGET_RATIO = 1.2  # import palyra / the floor
TARGET_MB = 45.0

_PROBE = """\
import resource, sys, time
_t0 = time.perf_counter()
{statement}
_t1 = time.perf_counter()
_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
_lazy = [m for m in {lazy!r} if m in sys.modules]
_hwm = None
try:
    for _line in open("/proc/self/status"):
        if _line.startswith("VmHWM:"):
            _hwm = int(_line.split()[1])
except OSError:
    pass
print(repr((_t1 - _t0, _rss, _hwm, len(sys.modules), _lazy)))
"""


def _sample(label: str) -> dict[str, Any]:
    code = _PROBE.format(statement=SUBJECTS[label], lazy=LAZY)
    # Through /bin/sh, which forks: a child forked straight from this (large)
    # process would report this process's peak RSS as its own ru_maxrss, as
    # Linux carries the peak of the forked address space across exec.
    command = ["/bin/sh", "-c", '"$0" -I -c "$1"; exit $?', sys.executable, code]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    seconds, rss_kb, hwm_kb, modules, loaded = ast.literal_eval(done.stdout.strip())
    return {
        "seconds": seconds,
        "rss_mb": rss_kb / 1024.0,  # ru_maxrss is in KiB on Linux
        "vmhwm_mb": hwm_kb / 1024.0 if hwm_kb is not None else None,
        "modules": modules,
        "lazy_loaded": loaded,
        "process_wall": wall,
    }


def _importtime(module: str, top: int = 12) -> list[dict[str, Any]]:
    """The slowest imports (cumulative) under ``-X importtime``, one run."""
    done = subprocess.run(
        [sys.executable, "-I", "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        self_us, cumulative_us, name = line.removeprefix("import time:").split("|")
        rows.append(
            {
                "module": name.strip(),
                "self_ms": int(self_us.strip()) / 1000,
                "cumulative_ms": int(cumulative_us.strip()) / 1000,
            }
        )
    rows.sort(key=lambda row: row["cumulative_ms"], reverse=True)
    return rows[:top]


def run(quick: bool) -> dict[str, Any]:
    """Measure, print the table, return the JSON section."""
    rounds = 4 if quick else 15
    labels = list(SUBJECTS)
    banner(f"import: {len(labels)} subjects in fresh subprocesses, N={rounds} each")
    for label in labels:  # warm bytecode caches; not recorded
        _sample(label)
    samples: dict[str, list[dict[str, Any]]] = {label: [] for label in labels}
    for i in range(rounds):
        shift = i % len(labels)
        for label in labels[shift:] + labels[:shift]:
            samples[label].append(_sample(label))

    results: dict[str, Any] = {"rounds": rounds, "subjects": {}}
    rows = []
    for label in labels:
        summary = _summary(samples[label])
        results["subjects"][label] = summary
        rows.append(
            [
                SUBJECTS[label],
                summary["import_s_median"],
                summary["import_s_p90"],
                summary["rss_mb_median"],
                summary["modules"],
            ]
        )
    print(table(["statement", "median s", "p90 s", "maxrss MB", "modules"], rows))
    results["checks"] = _checks(results["subjects"], samples["palyra"])
    results["importtime_top"] = offenders = _importtime("palyra")
    print("\nslowest imports under `python -X importtime -c 'import palyra'` (1 run):")
    print(
        table(
            ["module", "cumulative ms", "self ms"],
            [[r["module"], r["cumulative_ms"], r["self_ms"]] for r in offenders],
        )
    )
    return results


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    seconds = [s["seconds"] for s in runs]
    rss = [s["rss_mb"] for s in runs]
    return {
        "import_s_median": median(seconds),
        "import_s_p90": percentile(seconds, 90),
        "rss_mb_median": median(rss),
        "rss_mb_p90": percentile(rss, 90),
        "vmhwm_mb_median": median(
            [s["vmhwm_mb"] for s in runs if s["vmhwm_mb"] is not None]
        ),
        "modules": int(median([s["modules"] for s in runs])),
        "process_wall_s_median": median([s["process_wall"] for s in runs]),
        "samples": runs,
    }


def _checks(
    subjects: dict[str, Any], palyra_runs: list[dict[str, Any]]
) -> dict[str, Any]:
    palyra, floor = subjects["palyra"], subjects["floor"]
    ratio = palyra["import_s_median"] / floor["import_s_median"]
    first = subjects["palyra + first client"]["import_s_median"]
    machinery = subjects["httpx + BaseModel"]["import_s_median"]
    loaded = sorted({m for s in palyra_runs for m in s["lazy_loaded"]})
    checks = {
        "import_ratio": {
            "value": ratio,
            "target": TARGET_RATIO,
            "verdict": verdict(ratio, TARGET_RATIO),
        },
        "peak_rss": {
            "value_mb": palyra["rss_mb_median"],
            "target_mb": TARGET_MB,
            "verdict": verdict(palyra["rss_mb_median"], TARGET_MB),
        },
        "lazy_modules": {
            "must_not_be_loaded": list(LAZY),
            "loaded": loaded,
            "verdict": "PASS" if not loaded else "FAIL",
        },
        "first_client": {
            "value_s": first,
            "ratio_to_floor": first / floor["import_s_median"],
            "ratio_to_httpx_and_basemodel": first / machinery,
        },
    }
    print(
        f"\nimport palyra {palyra['import_s_median']:.3f} s ="
        f" {ratio:.2f}x the floor (import httpx, pydantic:"
        f" {floor['import_s_median']:.3f} s; target <= {TARGET_RATIO}x):"
        f" {checks['import_ratio']['verdict']}"
    )
    print(
        f"import palyra peak RSS {palyra['rss_mb_median']:.1f} MB"
        f" (target <= {TARGET_MB:.0f} MB): {checks['peak_rss']['verdict']}"
    )
    print(
        f"import palyra + the first Palyra(): {first:.3f} s = {first / machinery:.2f}x"
        f" httpx with pydantic's BaseModel ({machinery:.3f} s); no target"
    )
    if loaded:
        print(f"lazy modules LOADED by import palyra: {', '.join(loaded)}: FAIL")
    else:
        print(f"lazy modules not loaded by import palyra ({', '.join(LAZY)}): PASS")
    return checks
