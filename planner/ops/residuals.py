"""The calibration rows' residuals behind the bands, stored in ``measurements/calibration_residuals.json``.

Each shipped profile's fitted rows as ``(row key, fitted parameters, log(1 + error))`` (None for
a bound or gap row): what planner.ops.spreads groups into the spreads of the bands.  Predicting
them takes ~545 scalar calibration predictions over every shipped profile (~0.13 s, 10% of a
default ``planner plan``); they depend only on the data files and the model code, so they are
stored, keyed by the SHA-256 of the data files they read (:func:`inputs_sha256`).

The stored rows are used only while that key matches the data in use (``$PLANNER_DATA_DIR``
included): an edited data file gives another key and the rows are predicted again, as before.
A model change does not change the key: tests/ops/test_calibration_residuals.py predicts every
profile's rows and requires the stored ones back bit for bit.  Regenerate with ``make residuals``
(or that test with ``--update-golden``); the file is derived, never edited.
"""

from __future__ import annotations

import hashlib
import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

from planner import catalog

RESIDUALS_FILE = "calibration_residuals.json"
REGENERATE = "make residuals"

Residual = tuple[str, list[str], float | None]  # (row key, fitted parameters, log(1 + error) or None)


def input_files() -> list[Path]:
    """The data files the residuals are predicted from: the calibration rows, the expert-load
    fit's inputs, every shipped hardware profile and model card."""
    m = catalog.data_dir("measurements")
    files = [m / "calibration.json", m / "expert_load.toml"]
    for kind in ("hardware_profiles", "models"):
        folder = catalog.data_dir(kind)
        files += sorted(folder.glob("*.toml")) if folder.is_dir() else []
    return files


def inputs_sha256() -> str:
    """SHA-256 over the names (kind/file) and bytes of :func:`input_files` (a missing file hashes as missing)."""
    h = hashlib.sha256()
    for path in input_files():
        try:
            data = path.read_bytes()
        except OSError:
            data = None
        h.update(f"{path.parent.name}/{path.name}\0".encode())
        h.update(b"missing\0" if data is None else f"{len(data)}\0".encode() + data)
    return h.hexdigest()


def residuals_now(profile: str) -> list[Residual]:
    """The fitted rows of ``profile`` predicted now: (key, fitted parameters, log(1 + error)).

    Rows that are bounds or gaps (planner.ops.calibration) count as fitted rows but leave no
    residual (None).
    """
    from planner.ops.calibration import calibration_table, fit_rows, row_key  # only when not stored

    table = {r["key"]: r for r in calibration_table(profile)}
    rows: list[Residual] = []
    for raw in fit_rows(profile):
        key = row_key(raw)
        row = table.get(key)
        usable = row is not None and not row["bound"] and not row["gap"]
        rows.append((key, list(raw["fits"][profile]), math.log1p(row["error"]) if usable else None))
    return rows


def residuals_document() -> dict[str, Any]:
    """The ``measurements/calibration_residuals.json`` document, predicted now for every shipped profile."""
    return {"description": "log(1 + error) of each shipped profile's fitted calibration rows (planner/ops/"
                           "residuals.py), keyed by the SHA-256 of the data files they are predicted from. "
                           f"Derived, not edited: regenerate with `{REGENERATE}` after a model change.",
            "inputs_sha256": inputs_sha256(),
            "profiles": {name: [[k, p, r] for k, p, r in residuals_now(name)]
                         for name in catalog.shipped_names("hardware_profiles")}}


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=1, sort_keys=True) + "\n"


def stored_residuals() -> dict[str, list[Residual]] | None:
    """The stored rows by profile, or None where the file is absent, unreadable or keyed by other data.

    Read (and the data hashed) once per process and set of data directories, as the rows' other
    readers cache what they read (planner.catalog, planner.ops.spreads).
    """
    dirs = tuple(str(catalog.data_dir(kind)) for kind in ("measurements", "hardware_profiles", "models"))
    return _stored(dirs)


@lru_cache(maxsize=4)
def _stored(dirs: tuple[str, ...]) -> dict[str, list[Residual]] | None:
    try:
        document = json.loads((Path(dirs[0]) / RESIDUALS_FILE).read_text(encoding="utf-8"))
        if document["inputs_sha256"] != inputs_sha256():
            return None
        return {name: [(str(k), [str(x) for x in p], None if r is None else float(r)) for k, p, r in rows]
                for name, rows in document["profiles"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def residuals(profile: str) -> list[Residual]:
    """The fitted rows of ``profile``: stored where the key matches, else :func:`residuals_now` (same floats)."""
    stored = stored_residuals()
    if stored is not None and profile in stored:
        return stored[profile]
    return residuals_now(profile)


def main() -> None:
    """``make residuals``: rewrite the stored residuals of the data in use."""
    path = catalog.data_dir("measurements") / RESIDUALS_FILE
    path.write_text(dumps(residuals_document()), encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
