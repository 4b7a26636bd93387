"""Published system-level measurements predicted without refitting (held out from calibration).

Rows live in ``measurements/validation.json``: each names a scenario, a layout, the metric of
``planner evaluate``'s report it is compared with (``pool.key``), a scale (e.g. 8 dies per node),
the measured value, the accepted tolerance and its source.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from planner.catalog import data_dir
from planner.documents import report_dict
from planner.errors import DataFileError
from planner.evaluate import evaluate
from planner.inputs.layout import parse_layout
from planner.inputs.scenario import ScenarioFile, build_scenario


def validation_path() -> Path:
    return data_dir("measurements") / "validation.json"


def load_rows(path: Path | None = None) -> list[dict[str, Any]]:
    path = path or validation_path()
    try:
        return json.loads(path.read_text(encoding="utf-8"))["rows"]
    except (OSError, ValueError, KeyError) as exc:
        raise DataFileError(f"cannot read validation rows ({exc})", where=str(path)) from None


def predict(row: dict[str, Any]) -> float:
    """The planner's prediction of ``row['metric']`` (times ``row['scale']``) for the row's layout."""
    where = f"validation row {row['id']}"
    layout = parse_layout(row["layout"], where)
    scenario = build_scenario(ScenarioFile.model_validate(row["scenario"]), {}, where)
    doc = report_dict(evaluate(layout, scenario, where))
    pool, key = row["metric"].split(".")
    return float(doc[pool][key]) * float(row.get("scale", 1.0))


def validation_table(path: Path | None = None) -> list[dict[str, Any]]:
    """Predicted vs measured for every row, with the signed relative error and the verdict."""
    out = []
    for row in load_rows(path):
        predicted = predict(row)
        error = predicted / row["measured"] - 1.0
        out.append({"id": row["id"], "predicted": predicted, "measured": row["measured"], "unit": row["unit"],
                    "error": error, "tolerance": row["tolerance"], "within": abs(error) <= row["tolerance"],
                    "used_for_calibration": row["used_for_calibration"], "source": row["source"]})
    return out
