"""The pinned copies in tests/data/pinned/ still match the research notes in ../shared/reference.

The calibration and validation tests read the pinned copies, so they run on a fresh clone.  This
is the one test that needs ``../shared`` (beside the repository) and skips without it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PINNED = ROOT / "tests" / "data" / "pinned"
SHARED = ROOT.parent / "shared" / "reference"
# pinned file -> (its source under ../shared/reference, True if pinned whole / False if a subset of the rows by id)
PINNED_FILES = {"calibration.json": ("calibration.json", True),
                "validation_public.json": ("validation_public.json", False),
                "ascend_expert_load_overlap.json": ("kernels/ascend_expert_load_overlap.json", True),
                "gpu_blackwell_hopper.json": ("kernels/gpu_blackwell_hopper.json", True)}


def _rows(path: Path) -> dict[str, dict]:
    rows = json.loads(path.read_text(encoding="utf-8"))
    by_id = {r["id"]: r for r in rows}
    assert len(by_id) == len(rows), f"{path}: duplicate ids"
    return by_id


def test_every_pinned_file_is_listed_with_its_source() -> None:
    readme = (PINNED / "README.md").read_text(encoding="utf-8")
    assert {p.name for p in PINNED.glob("*.json")} == set(PINNED_FILES)
    for name, (source, _) in PINNED_FILES.items():
        assert f"`../shared/reference/{source}`" in readme, name
    assert "2026-11-29" in readme


@pytest.mark.shared
@pytest.mark.parametrize("name", sorted(PINNED_FILES))
def test_pinned_copy_matches_shared(name: str) -> None:
    relative, whole = PINNED_FILES[name]
    source = SHARED / relative
    if not source.is_file():
        pytest.skip(f"{source} not present (research notes beside the repository)")
    pinned, reference = _rows(PINNED / name), _rows(source)
    if whole:
        assert pinned == reference, "re-copy the file (tests/data/pinned/README.md)"
    else:
        stale = sorted(rid for rid, row in pinned.items() if reference.get(rid) != row)
        assert not stale, f"pinned rows differ from {source}: {stale}"


@pytest.mark.shared
def test_every_reference_system_row_is_used_or_excluded_with_a_reason() -> None:
    """measurements/validation.json accounts for every row of the reference file: predicted, or
    listed under ``excluded`` with the reason (so a new reference row cannot be silently left out)."""
    source = SHARED / "validation_public.json"
    if not source.is_file():
        pytest.skip(f"{source} not present (research notes beside the repository)")
    data = json.loads((ROOT / "measurements" / "validation.json").read_text(encoding="utf-8"))
    accounted = {r["id"] for r in data["rows"]} | {e["id"] for e in data["excluded"]}
    reference = set(_rows(source))
    assert reference - accounted == set(), "add these rows to validation.json, or to its excluded list with a reason"
    assert accounted - reference == set(), "validation.json names rows the reference does not have"
