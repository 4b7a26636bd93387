"""Deployment modes: one registry entry each (knobs, candidate space, step model, memory fit, summary).

Adding a mode touches three files: its module here (entry, candidates, step model or a reuse of
one in planner/serving/), this registry, and planner/inputs/layout.py (the ``Mode`` value and its
decode-pool schema in the layout union).
"""

from __future__ import annotations

from planner.inputs.layout import Mode
from planner.modes.base import ModeEntry
from planner.modes.collocated import COLLOCATED
from planner.modes.pd import PD
from planner.modes.transformerless import TRANSFORMERLESS

MODES: dict[Mode, ModeEntry] = {e.mode: e for e in (COLLOCATED, PD, TRANSFORMERLESS)}
ALL_MODES: tuple[Mode, ...] = tuple(MODES)

__all__ = ["ALL_MODES", "MODES", "ModeEntry"]
