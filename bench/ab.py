"""A/B: palyra at a base commit against the working tree, in one run.

``python bench/ab.py --base REV [--rounds N] [--quick] [--instructions]``
exports REV's ``palyra/`` into a temporary directory and runs
``bench/probe.py`` (this tree's) alternately against each, N rounds, each
sample a fresh process. The floor, ``import httpx, pydantic``, is sampled in
the same rounds. Reported: medians per side and the change. With
``--instructions`` (needs valgrind), the instructions of one ``Palyra.chat``
over ``MockTransport`` are counted too, beside raw httpx's: counts that the
machine's load does not move. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._common import banner, table  # noqa: E402

_FLOOR = (
    "import time; t = time.perf_counter(); import httpx, pydantic;"
    " print(time.perf_counter() - t)"
)


def export(rev: str, into: Path) -> Path:
    """REV's palyra package, unpacked under ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", rev, "palyra"],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def _env(palyra_root: Path, **extra: str) -> dict[str, str]:
    """The environment of a sample: palyra from ``palyra_root``, and bytecode
    cached (without it, under ``PYTHONDONTWRITEBYTECODE``, the exported base
    would compile every module in every sample and the tree would not)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPATH": str(palyra_root), **extra}


def _run(code_path: Path | None, args: list[str], palyra_root: Path) -> str:
    env = _env(palyra_root)
    command = [sys.executable, "-I" if code_path is None else "-P"]
    command += ["-c", _FLOOR] if code_path is None else [str(code_path), *args]
    return subprocess.run(
        command, capture_output=True, text=True, check=True, env=env, cwd=palyra_root
    ).stdout


def sample(palyra_root: Path, quick: bool) -> dict[str, Any]:
    """One probe sample of the palyra found at ``palyra_root``."""
    out = _run(ROOT / "bench" / "probe.py", ["--quick"] if quick else [], palyra_root)
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def floor() -> float:
    """One sample of ``import httpx, pydantic`` in a fresh isolated process."""
    return float(_run(None, [], ROOT).strip())


def instructions(palyra_root: Path, subject: str) -> int:
    """Instructions of one call of ``subject`` (``bench/icount.py``), counted
    by callgrind as the difference between 300 and 100 calls."""
    totals = []
    for calls in (100, 300):
        env = _env(palyra_root, PYTHONHASHSEED="0")
        done = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--callgrind-out-file=/dev/null",
                sys.executable,
                "-P",
                str(ROOT / "bench" / "icount.py"),
                subject,
                str(calls),
            ],
            capture_output=True,
            text=True,
            check=True,
            env=env,
            cwd=palyra_root,
        )
        line = next(x for x in done.stderr.splitlines() if "Collected" in x)
        totals.append(int(line.split()[-1]))
    return (totals[1] - totals[0]) // 200


def count_instructions(trees: dict[str, Path]) -> dict[str, dict[str, int]]:
    """Instructions per call, palyra and raw httpx, for each tree."""
    raw = instructions(ROOT, "raw")
    counts = {}
    for side, tree in trees.items():
        palyra = instructions(tree, "palyra")
        counts[side] = {"palyra": palyra, "raw": raw, "overhead": palyra - raw}
    print(
        table(
            ["instructions per call", "base", "head", "change"],
            [
                [
                    key,
                    counts["base"][key],
                    counts["head"][key],
                    f"{(counts['head'][key] / counts['base'][key] - 1) * 100:+.1f} %",
                ]
                for key in ("palyra", "raw", "overhead")
            ],
        )
    )
    return counts


def _flat(sample: dict[str, Any]) -> dict[str, float]:
    flat: dict[str, float] = {}
    for key, value in sample.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat


def run(base: str, rounds: int, quick: bool, icount: bool) -> dict[str, Any]:
    """Sample both sides alternately and summarise."""
    banner(f"A/B: {base} vs working tree, {rounds} rounds (fresh processes)")
    counts = None
    with tempfile.TemporaryDirectory(prefix="palyra-ab-") as tmp:
        trees = {"base": export(base, Path(tmp)), "head": ROOT}
        samples: dict[str, list[dict[str, float]]] = {"base": [], "head": []}
        floors = []
        for side in samples:  # unrecorded: writes each side's bytecode cache
            sample(trees[side], quick=True)
        for i in range(rounds):
            floors.append(floor())
            for side in ("base", "head") if i % 2 == 0 else ("head", "base"):
                samples[side].append(_flat(sample(trees[side], quick)))
        if icount:
            counts = count_instructions(trees)
    medians = {
        side: {k: statistics.median(s[k] for s in runs) for k in runs[0]}
        for side, runs in samples.items()
    }
    floor_s = statistics.median(floors)
    rows = []
    for key in medians["base"]:
        before, after = medians["base"][key], medians["head"][key]
        change = (after - before) / before * 100 if before else float("nan")
        rows.append([key, before, after, f"{change:+.0f} %"])
    rows.append(["floor: import httpx, pydantic (s)", floor_s, floor_s, ""])
    print(table(["metric", "base", "head", "change"], rows))
    for side in ("base", "head"):
        ratio = medians[side]["import_s"] / floor_s
        first = medians[side]["first_client_s"] / floor_s
        print(
            f"{side}: import palyra {ratio:.2f}x the floor; first client {first:.2f}x"
        )
    return {
        "base": base,
        "rounds": rounds,
        "floor_s": floor_s,
        "medians": medians,
        "instructions": counts,
    }


def main() -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="git revision to compare with")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--quick", action="store_true", help="short probes")
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions (valgrind)"
    )
    args = parser.parse_args()
    result = run(args.base, args.rounds, args.quick, args.instructions)
    out = ROOT / "bench" / "results" / "ab.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"figures written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
