"""Dollars per million tokens from a price per die-hour or chip-hour.

``usd_per_million_output_tokens = usd_per_die_hour * dies / 3600 / (goodput * output_tokens) * 1e6``:
every die of the layout (prefill pool included) over the output tokens it serves at its goodput,
the figure ``plan --rank-by cost`` ranks by.  With one price per die, that ranking is the ranking
by goodput per die; it differs only where layouts pay for different hardware.

``usd_per_million_input_tokens`` charges the prefill pool alone to the prompt tokens (cache hits
included, as APIs bill them): ``usd_per_die_hour * prefill dies / 3600 / (goodput * input_tokens)
* 1e6``.  With ``usd_per_million_output_tokens_decode_pool`` (the decode pool over the output
tokens) the two pool shares add up to the layout's cost.  A chunked-prefill mode (collocated)
has no prefill pool to split off: both shares are None.

Prices come from the scenario (``[cost]``, or ``--usd-per-die-hour`` / ``--usd-per-chip-hour``): a
chip-hour price is spread over the chip's dies (``usd_per_chip_hour / dies_per_chip``); a prefill
pool on its own hardware (``prefill_hardware``) is priced with ``prefill_usd_per_*_hour``.
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.inputs.layout import Layout
from planner.inputs.scenario import Price
from planner.units import MEGA

SECONDS_PER_HOUR = 3600.0
PER_MILLION = MEGA  # tokens in the million a price is quoted per


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenCost:
    """What one layout costs at its goodput (None where a pool split does not apply or nothing is served)."""

    usd_per_hour: float
    usd_per_million_output_tokens: float | None
    usd_per_million_input_tokens: float | None             # prefill pool over prompt tokens
    usd_per_million_output_tokens_decode_pool: float | None  # decode pool over output tokens


def _per_million(usd_per_hour: float, tokens_per_s: float) -> float | None:
    return usd_per_hour / SECONDS_PER_HOUR / tokens_per_s * PER_MILLION if tokens_per_s > 0 else None


def token_cost(layout: Layout, price: Price, prefill_price: Price | None = None, *, goodput_requests_per_s: float,
               input_tokens: float, output_tokens: float) -> TokenCost:
    """Dollars per hour and per million tokens of ``layout`` serving ``goodput_requests_per_s``.

    ``prefill_price`` prices the prefill pool's dies (its own hardware); default ``price``.
    """
    p = layout.prefill
    prefill_dies = p.instances * p.dies if p is not None else 0
    pre_hourly = (prefill_price or price).usd_per_die_hour * prefill_dies
    dec_hourly = price.usd_per_die_hour * (layout.dies - prefill_dies)
    out_per_s, in_per_s = goodput_requests_per_s * output_tokens, goodput_requests_per_s * input_tokens
    split = p is not None
    return TokenCost(
        usd_per_hour=pre_hourly + dec_hourly, usd_per_million_output_tokens=_per_million(pre_hourly + dec_hourly,
                                                                                          out_per_s),
        usd_per_million_input_tokens=_per_million(pre_hourly, in_per_s) if split else None,
        usd_per_million_output_tokens_decode_pool=_per_million(dec_hourly, out_per_s) if split else None)
