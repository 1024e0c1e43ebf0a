"""Benchmark 1: ``import palyra`` vs ``import httpx`` vs ``import json``.

Each sample is a fresh ``python -I -c`` subprocess that times the import with
``time.perf_counter`` and reads its peak RSS with ``resource.getrusage``.
Subjects are interleaved (rotating order each round) so drift and noise hit
them alike; one unrecorded warm-up run per subject compiles the bytecode.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import time
from typing import Any

from bench._common import banner, median, percentile, table, verdict

SUBJECTS = ("json", "httpx", "palyra")
# Must stay out of sys.modules after `import palyra`: loaded on first use only.
LAZY = (
    "tiktoken",
    "keyring",
    "palyra._providers.openai",
    "palyra._providers.deterministic",
)
TARGET_SECONDS = 0.35
TARGET_MB = 45.0

_PROBE = """\
import resource, sys, time
_t0 = time.perf_counter()
import {module}
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


def _sample(module: str) -> dict[str, Any]:
    code = _PROBE.format(module=module, lazy=LAZY)
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
    banner(f"import: {', '.join(SUBJECTS)} in fresh subprocesses, N={rounds} each")
    for module in SUBJECTS:  # warm bytecode caches; not recorded
        _sample(module)
    samples: dict[str, list[dict[str, Any]]] = {m: [] for m in SUBJECTS}
    for i in range(rounds):
        shift = i % len(SUBJECTS)
        for module in SUBJECTS[shift:] + SUBJECTS[:shift]:
            samples[module].append(_sample(module))

    results: dict[str, Any] = {"rounds": rounds, "subjects": {}}
    rows = []
    for module in SUBJECTS:
        runs = samples[module]
        seconds = [s["seconds"] for s in runs]
        rss = [s["rss_mb"] for s in runs]
        walls = [s["process_wall"] for s in runs]
        summary = {
            "import_s_median": median(seconds),
            "import_s_p90": percentile(seconds, 90),
            "rss_mb_median": median(rss),
            "rss_mb_p90": percentile(rss, 90),
            "vmhwm_mb_median": median(
                [s["vmhwm_mb"] for s in runs if s["vmhwm_mb"] is not None]
            ),
            "modules": int(median([s["modules"] for s in runs])),
            "process_wall_s_median": median(walls),
            "samples": runs,
        }
        results["subjects"][module] = summary
        rows.append(
            [
                f"import {module}",
                summary["import_s_median"],
                summary["import_s_p90"],
                summary["rss_mb_median"],
                summary["rss_mb_p90"],
                summary["vmhwm_mb_median"],
                summary["modules"],
                summary["process_wall_s_median"],
            ]
        )
    print(
        table(
            [
                "subject",
                "median s",
                "p90 s",
                "maxrss MB",
                "p90 MB",
                "VmHWM MB",
                "modules",
                "wall s",
            ],
            rows,
        )
    )

    palyra = results["subjects"]["palyra"]
    loaded = sorted({m for s in samples["palyra"] for m in s["lazy_loaded"]})
    lazy_ok = not loaded
    checks = {
        "import_time": {
            "value_s": palyra["import_s_median"],
            "target_s": TARGET_SECONDS,
            "verdict": verdict(palyra["import_s_median"], TARGET_SECONDS),
        },
        "peak_rss": {
            "value_mb": palyra["rss_mb_median"],
            "target_mb": TARGET_MB,
            "verdict": verdict(palyra["rss_mb_median"], TARGET_MB),
        },
        "lazy_modules": {
            "must_not_be_loaded": list(LAZY),
            "loaded": loaded,
            "verdict": "PASS" if lazy_ok else "FAIL",
        },
    }
    results["checks"] = checks
    print(
        f"\nimport palyra median {palyra['import_s_median']:.3f} s"
        f" (target <= {TARGET_SECONDS} s): {checks['import_time']['verdict']}"
    )
    print(
        f"import palyra peak RSS {palyra['rss_mb_median']:.1f} MB"
        f" (target <= {TARGET_MB:.0f} MB): {checks['peak_rss']['verdict']}"
    )
    if lazy_ok:
        print(f"lazy modules not loaded by import palyra ({', '.join(LAZY)}): PASS")
    else:
        print(f"lazy modules LOADED by import palyra: {', '.join(loaded)}: FAIL")

    offenders = _importtime("palyra")
    results["importtime_top"] = offenders
    print("\nslowest imports under `python -X importtime -c 'import palyra'` (1 run):")
    print(
        table(
            ["module", "cumulative ms", "self ms"],
            [[r["module"], r["cumulative_ms"], r["self_ms"]] for r in offenders],
        )
    )
    return results
