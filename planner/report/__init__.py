"""Rendering: rich tables and JSON for every command.

The only place with human units (TB/s, TFLOP/s, ms); everything upstream is SI.  Only this
package and ``cli.py`` import rich.  JSON output has sorted keys, no timestamps and no absolute
paths (a file is named by its base name only).
"""

from planner.documents.base import payload_json as dumps  # JSON needs no rich: planner.documents
from planner.report.base import console, fields_table, fmt_field, sources_table
from planner.report.data import (
           model_json,
           model_tables,
           models_table,
           params_table,
           profile_json,
           profile_tables,
           profiles_table,
)
from planner.report.decide import sensitivity_tables
from planner.report.evaluate import evaluate_tables
from planner.report.ops import (
    check_tables,
    known_misses_table,
    validate_failure,
    validate_rows_table,
    validate_summary_table,
    validate_tables,
)
from planner.report.plan import _pareto_rows, layout_summary, near_miss_table, pareto_table, plan_tables

__all__ = ["check_tables", "console", "known_misses_table", "validate_failure",
           "dumps", "evaluate_tables", "fields_table", "fmt_field", "layout_summary",
           "model_json", "model_tables", "models_table", "near_miss_table", "params_table", "pareto_table",
           "plan_tables", "profile_json", "sensitivity_tables",
           "profile_tables", "profiles_table", "sources_table", "validate_rows_table",
           "validate_summary_table", "validate_tables", "_pareto_rows"]
