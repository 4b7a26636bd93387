"""``make bench``: speed of the search, measured (never asserted in a test).

Prints candidate layouts evaluated per second by the vectorized step models (one core), the
wall time of the default ``planner plan`` including interpreter start-up, and the same for a
4x larger space.  Targets: >= 1,000,000 candidates/s; default plan <= 1 s wall.
"""

from __future__ import annotations

import subprocess
import sys
import time

from planner.inputs.layout import Mode
from planner.inputs.scenario import build_scenario
from planner.modes import MODES
from planner.search.score import score_decode

LARGE = ["--hardware", "h800", "--dies", "3072", "--weights-dtype", "fp8", "--activations-dtype", "fp8"]


def candidates_per_s(repeats: int = 3) -> tuple[float, int]:
    """Best-of-``repeats`` rate of the transformerless decode scorer (the largest pool space)."""
    scenario = build_scenario(None, {})
    cands = MODES[Mode.TRANSFORMERLESS].candidates(scenario.model, scenario.dies)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        score = score_decode(scenario, cands, MODES[Mode.TRANSFORMERLESS])
        best = min(best, time.perf_counter() - start)
    return len(score) / best, len(score)


def wall_s(args: list[str], repeats: int = 3) -> float:
    """Best-of-``repeats`` wall time of ``planner plan ARGS --json -`` in a fresh interpreter."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "planner", "plan", *args, "--json", "-"], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    rate, n = candidates_per_s()
    print(f"vectorized step model: {rate:,.0f} candidates/s ({n:,} transformerless decode candidates, one core)")
    default = wall_s([])
    print(f"default plan (deepseek-v3, cloudmatrix384, 768 dies), wall incl. start-up: {default:.2f} s")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import planner.cli"], check=False)
    print(f"interpreter + imports alone: {time.perf_counter() - start:.2f} s")
    large = wall_s(LARGE, repeats=1)
    print(f"4x space (deepseek-v3, h800, 3072 dies), wall incl. start-up: {large:.2f} s")


if __name__ == "__main__":
    main()
