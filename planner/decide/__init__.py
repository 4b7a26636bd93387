"""Deciding under uncertainty: error bands, sensitivity, failure what-ifs and cost per token.

Every module here prices layouts through the planner's one model (planner.goodput, the step
models of planner.modes and planner.serving, planner.evaluate); none has a formula of its own for
goodput, TTFT or TPOT.

- ``spreads.py``: how far each fitted efficiency may be off, from the calibration residuals and
  the system-level errors of its platform (planner.ops.spreads reads them from measurements/);
- ``outcomes.py``: one layout priced under S hardware samples in one vector call per pool;
- ``bands.py``: p10-p90 of goodput, step times, TTFT and TPOT over seeded samples; ties;
- ``sensitivity.py``: goodput per die of a layout with each input moved by +-X%;
- ``failures.py``: goodput that survives k dies, one node or one pod failing;
- ``cost.py``: a price per die-hour or chip-hour -> dollars per million tokens.
"""
