"""measurements/calibration_residuals.json (the calibration residuals behind the bands) is current.

The bands read the stored residuals (planner.ops.residuals) instead of predicting ~545 calibration
rows on every plan.  This test predicts every shipped profile's rows now and requires the stored
file back byte for byte (its data key and every float); ``--update-golden`` (or ``make residuals``)
rewrites it.  A second test checks the key: a copy of the data is served the stored rows, an edited
copy is not (it predicts them again).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from planner import catalog
from planner.decide.spreads import components
from planner.ops import residuals as res

ROOT = Path(__file__).resolve().parents[2]
PATH = ROOT / "measurements" / res.RESIDUALS_FILE


def test_stored_residuals_are_todays(update_golden):
    now = res.residuals_document()
    if update_golden:
        PATH.write_text(res.dumps(now), encoding="utf-8")
    stored = PATH.read_text(encoding="utf-8")
    assert f'"inputs_sha256": "{now["inputs_sha256"]}"' in stored, f"data files changed: {res.REGENERATE}"
    assert stored == res.dumps(now), f"the model's residuals changed: {res.REGENERATE}"
    # the stored path gives the groups the predicted rows give (what the bands read), bit for bit
    read = res.stored_residuals()
    assert read is not None and sorted(read) == catalog.shipped_names("hardware_profiles")
    for name, rows in now["profiles"].items():
        assert components(read[name]) == components([(k, p, r) for k, p, r in rows])


def test_stored_residuals_only_for_the_data_they_were_predicted_from(tmp_path, monkeypatch):
    for kind in ("measurements", "hardware_profiles", "models"):
        shutil.copytree(ROOT / kind, tmp_path / kind)
    monkeypatch.setenv("PLANNER_DATA_DIR", str(tmp_path))
    assert res.stored_residuals() is not None  # same bytes, same key
    card = tmp_path / "models" / "deepseek-v3.toml"
    card.write_text(card.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
    res._stored.cache_clear()
    try:
        assert res.stored_residuals() is None  # an edited input: predicted again
    finally:
        res._stored.cache_clear()
