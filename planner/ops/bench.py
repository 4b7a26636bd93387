"""``make bench``: speed of the search, measured (never asserted in a test).

Prints the candidates per second of the search's vectorized decode score (one core; rows whose
step floor already misses the TPOT SLO are counted there without being priced), then, each as a whole
``planner plan`` process (interpreter start-up included), the median wall time and the peak
resident memory over runs of: the default plan (target <= 1.0 s), 8 CloudMatrix384 pods (6,144
dies; target <= 2 s and <= 400 MB) and 21 pods (16,128 dies; target <= 3 s and <= 500 MB), and
an H800 cluster of 3,072 GPUs (384 servers).  The search's candidate space depends on the pod,
not on the number of pods (planner.search.plan.instance_cap): more pods add instance counts and
budget splits.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from planner.inputs.layout import Mode
from planner.inputs.scenario import build_scenario
from planner.modes import MODES
from planner.search.score import score_decode

CASES = (
    ("default plan (deepseek-v3, cloudmatrix384, 1 pod = 768 dies)", [], "<= 1.0 s"),
    ("8 CloudMatrix384 pods (6,144 dies)", ["--pods", "8"], "<= 2 s, <= 400 MB"),
    ("21 CloudMatrix384 pods (16,128 dies)", ["--pods", "21"], "<= 3 s, <= 500 MB"),
    ("H800, 384 servers (3,072 GPUs)", ["--hardware", "h800", "--pods", "384", "--weights-dtype", "fp8",
                                       "--activations-dtype", "fp8"], "-"),
)


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


# A child that runs ``planner plan`` and reports its own peak resident memory (KB on Linux) last.
_CHILD = ("import resource, sys\n"
          "sys.argv = ['planner', 'plan', *sys.argv[1:]]\n"
          "from planner.cli import main\n"
          "try:\n    main()\nexcept SystemExit:\n    pass\n"
          "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n")


def run(args: list[str], repeats: int = 3) -> tuple[float, float]:
    """(median wall s, peak RSS MB) of ``planner plan ARGS --json -`` as a fresh process, over ``repeats``."""
    walls, peaks = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", _CHILD, *args, "--json", "-"], check=False,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        walls.append(time.perf_counter() - start)
        peaks.append(float(out.stderr.strip().splitlines()[-1]) / 1024)
    return statistics.median(walls), max(peaks)


def main() -> None:
    rate, n = candidates_per_s()
    print(f"vectorized search score: {rate:,.0f} candidates/s ({n:,} transformerless decode candidates, one core; "
          "rows whose step floor misses the TPOT SLO are counted, not priced)")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import planner.cli"], check=False)
    print(f"interpreter + imports alone: {time.perf_counter() - start:.2f} s")
    for label, args, target in CASES:
        wall, peak = run(args)
        print(f"{label}: {wall:.2f} s median wall, {peak:.0f} MB peak RSS (target {target})")


if __name__ == "__main__":
    main()
