"""Held-out system-level measurements, predicted without refitting (measurements/validation.json).

The profiles' efficiencies are fitted only on kernel and communication microbenchmarks
(measurements/calibration.json); none of these rows was used for that.  Each row is gated at the
tolerance stored with it (and its reason); relative behaviour the published numbers show is
gated too: throughput falls with prompt length, and perfect expert balance beats the default.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from planner.ops.validation import validation_table

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "reference" / "validation_public.json"


@pytest.fixture(scope="module")
def table() -> dict[str, dict]:
    rows = validation_table()
    print(f"\n{'row':<30} {'predicted':>12} {'published':>12} {'error':>8} {'gate':>6}")
    for r in rows:
        print(f"{r['id']:<30} {r['predicted']:12.0f} {r['measured']:12.0f} {100 * r['error']:+7.1f}% "
              f"{100 * r['tolerance']:5.0f}%")
    return {r["id"]: r for r in rows}


def test_rows_are_held_out_and_sourced(table):
    for r in table.values():
        assert r["used_for_calibration"] is False
        assert len(r["source"]) > 10


def test_rows_match_the_published_values_when_shared_is_present(table):
    if not SHARED.exists():
        pytest.skip("../shared not present")
    published = {r["id"]: r["metric_value"] for r in json.loads(SHARED.read_text())}
    for rid, r in table.items():
        assert r["measured"] == published[rid]


def test_each_row_within_its_tolerance(table):
    outside = {rid: round(r["error"], 3) for rid, r in table.items() if not r["within"]}
    assert not outside, outside


def test_prefill_throughput_falls_with_prompt_length(table):
    p = [table[f"sgl-h100-prefill-{n}"]["predicted"] for n in ("1k", "2k", "4k")]
    assert p[0] > p[1] > p[2]


def test_perfect_balance_beats_default_balance(table):
    assert table["sgl-h100-prefill-4k-perfeplb"]["predicted"] > table["sgl-h100-prefill-4k"]["predicted"]
