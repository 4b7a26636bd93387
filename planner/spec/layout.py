"""Layout: the deployment a user writes down (TOML) and evaluates.

The key names are a user-facing contract (README, ``planner plan --write-layouts``)::

    mode = "collocated" | "pd" | "transformerless"
    [prefill]   instances, dies (per instance), tp, ep, batch_tokens (per die per forward), micro_batches,
                redundant_experts (optional, default 0)
    [decode]    instances, tp, ep, batch (sequences per attention die), micro_batches, redundant_experts
                dies                                 # pd and collocated: per instance
                attention_dies, expert_dies, domains # transformerless only (per instance)
                prefill_chunk_tokens                 # collocated only
    [scenario]  optional: the scenario the layout was planned for (see planner.spec.scenario)
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from planner.errors import LayoutError
from planner.spec.files import NonNegInt, PositiveInt, Strict, read_toml, validate_data
from planner.spec.model import ModelSpec
from planner.spec.scenario import ScenarioFile

MicroBatches = Annotated[int, Field(ge=1, le=8)]


class Mode(StrEnum):
    COLLOCATED = "collocated"
    PD = "pd"
    TRANSFORMERLESS = "transformerless"


class PrefillPool(Strict):
    instances: PositiveInt
    dies: PositiveInt
    tp: PositiveInt = 1
    ep: PositiveInt = 1
    batch_tokens: PositiveInt
    micro_batches: MicroBatches = 1
    redundant_experts: NonNegInt = 0


class DecodePool(Strict):
    instances: PositiveInt
    tp: PositiveInt = 1
    ep: PositiveInt = 1
    batch: PositiveInt
    micro_batches: MicroBatches = 1
    redundant_experts: NonNegInt = 0
    dies: PositiveInt | None = None
    attention_dies: PositiveInt | None = None
    expert_dies: PositiveInt | None = None
    domains: PositiveInt | None = None
    prefill_chunk_tokens: PositiveInt | None = None


class LayoutFile(Strict):
    mode: Mode
    prefill: PrefillPool | None = None
    decode: DecodePool
    scenario: ScenarioFile | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict in the TOML's shape, unset optional keys dropped (stable for JSON)."""
        data = self.model_dump(mode="json", exclude_none=True, exclude={"scenario"})
        return data

    @property
    def decode_attention_dies(self) -> int:
        """Dies running attention in one decode instance."""
        d = self.decode
        return (d.attention_dies if self.mode == Mode.TRANSFORMERLESS else d.dies) or 0

    @property
    def decode_expert_dies(self) -> int:
        """Dies running routed experts in one decode instance."""
        d = self.decode
        return (d.expert_dies if self.mode == Mode.TRANSFORMERLESS else d.dies) or 0

    @property
    def decode_instance_dies(self) -> int:
        if self.mode == Mode.TRANSFORMERLESS:
            return (self.decode.attention_dies or 0) + (self.decode.expert_dies or 0)
        return self.decode.dies or 0

    @property
    def dies(self) -> int:
        """Every die of the layout (all pools, all instances)."""
        total = self.decode.instances * self.decode_instance_dies
        if self.prefill is not None:
            total += self.prefill.instances * self.prefill.dies
        return total


_MODE_KEYS = {
    Mode.COLLOCATED: ({"dies", "prefill_chunk_tokens"}, {"attention_dies", "expert_dies", "domains"}),
    Mode.PD: ({"dies"}, {"attention_dies", "expert_dies", "domains", "prefill_chunk_tokens"}),
    Mode.TRANSFORMERLESS: ({"attention_dies", "expert_dies", "domains"}, {"dies", "prefill_chunk_tokens"}),
}


def _fail(key: str, message: str, where: str, fix: str) -> None:
    raise LayoutError(f"'{key}' {message}", where=where, fix=fix)


def check_mode_keys(layout: LayoutFile, where: str) -> None:
    """Each mode has its required keys and refuses the other modes' keys."""
    required, forbidden = _MODE_KEYS[layout.mode]
    set_keys = {k for k, v in layout.decode.model_dump().items() if v is not None}
    for key in sorted(forbidden & set_keys):
        _fail(f"decode.{key}", f"is not a {layout.mode.value} key", where,
              f"remove it (it belongs to {_owner(key)})")
    for key in sorted(required - set_keys):
        _fail(f"decode.{key}", f"is required in {layout.mode.value} mode", where, "add it")
    if layout.mode == Mode.COLLOCATED and layout.prefill is not None:
        _fail("prefill", "is not used in collocated mode", where,
              "remove [prefill]; set decode.prefill_chunk_tokens")
    if layout.mode != Mode.COLLOCATED and layout.prefill is None:
        _fail("prefill", f"is required in {layout.mode.value} mode", where, "add a [prefill] table")


def _owner(key: str) -> str:
    owners = [m.value for m, (req, _) in _MODE_KEYS.items() if key in req]
    return " / ".join(owners) + " mode"


def _check_parallel(pool: str, dies: int, tp: int, ep: int, model: ModelSpec, where: str) -> None:
    att = model.file.attention
    if dies % tp:
        _fail(f"{pool}.tp", f"= {tp} does not divide the pool's {dies} dies", where,
              "choose tp dividing dies")
    if att.num_heads % tp:
        _fail(f"{pool}.tp", f"= {tp} does not divide the model's {att.num_heads} attention heads",
              where, "choose a tp dividing num_heads")
    if ep > 1 and not model.is_moe:
        _fail(f"{pool}.ep", f"= {ep} but {model.name} has no routed experts", where, "set ep = 1")


def _check_experts(pool: str, expert_dies: int, ep: int, redundant: int, model: ModelSpec, where: str) -> None:
    if not model.is_moe:
        return
    if expert_dies % ep:
        _fail(f"{pool}.ep", f"= {ep} does not divide the {expert_dies} expert dies", where,
              "choose ep dividing the dies that host experts")
    slots = model.file.ffn.num_routed_experts + redundant
    if slots % ep:
        _fail(f"{pool}.ep", f"cannot place {slots} experts (routed + redundant) evenly on {ep} dies",
              where, "change ep or redundant_experts so that ep divides their sum")


def check_layout(layout: LayoutFile, model: ModelSpec, where: str) -> None:
    """Refuse impossible combinations, naming the key (exit 2)."""
    check_mode_keys(layout, where)
    d = layout.decode
    if layout.prefill is not None:
        p = layout.prefill
        _check_parallel("prefill", p.dies, p.tp, p.ep, model, where)
        _check_experts("prefill", p.dies, p.ep, p.redundant_experts, model, where)
    if layout.mode == Mode.TRANSFORMERLESS:
        if not model.is_moe:
            _fail("mode", "transformerless needs an MoE model", where, "use pd or collocated")
        if (d.attention_dies or 0) % (d.domains or 1):
            _fail("decode.domains", f"= {d.domains} does not divide attention_dies = {d.attention_dies}",
                  where, "choose domains dividing attention_dies")
        _check_parallel("decode", d.attention_dies or 0, d.tp, 1, model, where)
        _check_experts("decode", d.expert_dies or 0, d.ep, d.redundant_experts, model, where)
    else:
        _check_parallel("decode", d.dies or 0, d.tp, d.ep, model, where)
        _check_experts("decode", d.dies or 0, d.ep, d.redundant_experts, model, where)
    if d.batch % d.micro_batches:
        _fail("decode.micro_batches", f"= {d.micro_batches} does not divide batch = {d.batch}", where,
              "choose a batch that is a multiple of micro_batches")


def parse_layout(data: dict[str, Any], where: str) -> LayoutFile:
    return validate_data(LayoutFile, data, where)


def load_layout(path: Path | str) -> LayoutFile:
    """Read a layout TOML (schema only; :func:`check_layout` needs the model)."""
    return parse_layout(read_toml(Path(path)), str(path))


def layout_toml(layout: LayoutFile) -> str:
    """TOML text of a layout, with its [scenario] table when it has one (``--write-layouts``)."""
    from planner.spec.toml_writer import toml_text

    data = layout.to_dict()
    if layout.scenario is not None:
        data["scenario"] = layout.scenario.model_dump(mode="json", exclude_none=True)
    return toml_text(data)
