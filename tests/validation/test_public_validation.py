"""Held-out system-level measurements, predicted without refitting (measurements/validation.json).

The profiles' efficiencies are fitted only on kernel and communication microbenchmarks
(measurements/calibration.json); none of these rows was used for that.  Each row is gated at the
band stored with it (``tolerance`` and ``band_reason``, measurements/README.md "Bands"); a row the
planner is known to miss carries ``known_miss`` (the reason) and is a strict xfail here, so the
mark fails the suite the day the row comes back inside its band.  Relative behaviour the published
numbers show is gated too: throughput falls with prompt length, and perfect expert balance beats
the default.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from planner.ops.validation import load_rows, validation_table

ROOT = Path(__file__).resolve().parents[2]
# The published rows, pinned from ../shared/reference (tests/data/pinned/README.md).
PUBLISHED = ROOT / "tests" / "data" / "pinned" / "validation_public.json"


@pytest.fixture(scope="module")
def table() -> dict[str, dict]:
    rows = validation_table()
    print(f"\n{'row':<30} {'predicted':>12} {'published':>12} {'error':>8} {'band':>6}")
    for r in rows:
        print(f"{r['id']:<30} {r['predicted']:12.0f} {r['measured']:12.0f} {100 * r['error']:+7.1f}% "
              f"{100 * r['tolerance']:5.0f}%{'  known miss' if r['known_miss'] else ''}")
    return {r["id"]: r for r in rows}


def _band_params() -> list:
    """One test per row; a known miss is a strict xfail with its reason."""
    return [pytest.param(row["id"], id=row["id"], marks=[pytest.mark.xfail(strict=True, reason=row["known_miss"])]
                         if row.get("known_miss") else []) for row in load_rows()]


def test_rows_are_held_out_and_sourced(table):
    for r in table.values():
        assert r["used_for_calibration"] is False
        assert len(r["source"]) > 10


def test_rows_match_the_published_values(table):
    published = {r["id"]: r["metric_value"] for r in json.loads(PUBLISHED.read_text(encoding="utf-8"))}
    assert set(table) <= set(published), set(table) - set(published)
    for rid, r in table.items():
        assert r["measured"] == published[rid]


@pytest.mark.parametrize("row_id", _band_params())
def test_row_within_its_band(table, row_id):
    r = table[row_id]
    assert abs(r["error"]) <= r["tolerance"], \
        f"{row_id}: error {r['error']:+.1%} outside +-{r['tolerance']:.0%} ({r['band_reason']})"


def test_every_left_out_reference_row_says_why():
    data = json.loads((ROOT / "measurements" / "validation.json").read_text(encoding="utf-8"))
    excluded = [e["id"] for e in data["excluded"]]
    assert len(set(excluded)) == len(excluded)
    assert not set(excluded) & {r["id"] for r in data["rows"]}, "a row is both used and excluded"
    for entry in data["excluded"]:
        assert len(entry["reason"]) > 40, entry["id"]


def test_every_row_states_its_band():
    for row in load_rows():
        assert 0 < row["tolerance"] < 1 and len(row["band_reason"]) > 60, row["id"]
        assert "known_miss" not in row or len(row["known_miss"]) > 40, row["id"]


def test_prefill_throughput_falls_with_prompt_length(table):
    p = [table[f"sgl-h100-prefill-{n}"]["predicted"] for n in ("1k", "2k", "4k")]
    assert p[0] > p[1] > p[2]


def test_perfect_balance_beats_default_balance(table):
    assert table["sgl-h100-prefill-4k-perfeplb"]["predicted"] > table["sgl-h100-prefill-4k"]["predicted"]
