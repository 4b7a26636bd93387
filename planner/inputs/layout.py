"""Layout: the deployment a user writes down (TOML) and evaluates; one schema per mode.

The key names are a user-facing contract (README, ``planner plan --write-layouts``)::

    mode = "collocated" | "pd" | "transformerless"
    [prefill]   instances, dies (per instance), tp, ep, batch_tokens (per die per forward), micro_batches,
                redundant_experts (optional, default 0)           # pd and transformerless only
                pp (optional, default 1: pipeline stages; dense models)
    [decode]    instances, tp, ep, batch (sequences per attention die), micro_batches, redundant_experts
                dies                                 # pd and collocated: per instance
                attention_dies, expert_dies, domains # transformerless only (per instance)
                prefill_chunk_tokens                 # collocated only
                pp (optional, default 1)             # pd and collocated: pipeline stages (dense models)
    [scenario]  optional: the scenario the layout was planned for (see planner.inputs.scenario)

The file is a union discriminated by ``mode``: each mode has its own decode-pool schema, so a
key of another mode is refused by name before pydantic sees it.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, ValidationError, model_validator

from planner.errors import DataFileError, LayoutError
from planner.inputs.files import Dies, Strict, ranged, read_toml, validation_message
from planner.inputs.model import ModelSpec
from planner.inputs.scenario import Scenario, ScenarioFile, resolve_scenario

MicroBatches = ranged(int, 1, 8, "overlap needs 2; published deployments use 1-4")
Instances = ranged(int, 1, 100_000, "instances of a pool; the largest systems have ~1e5 dies")
Tp = ranged(int, 1, 1024, "tensor parallelism divides the attention heads, at most 1024")
Ep = ranged(int, 1, 100_000, "expert parallelism spans at most the system's dies", "dies")
Redundant = ranged(int, 0, 100_000, "EPLB adds a few replicas per die: published deployments add 32 on 144-320 dies",
                   "experts")
BatchTokens = ranged(int, 1, 1_048_576, "tokens per die per forward; published prefill uses 4K-16K", "tokens")
Batch = ranged(int, 1, 65_536, "sequences per die; published decode batches are 8-256", "sequences")
Pp = ranged(int, 1, 64, "pipeline stages (a stage holds whole layers): published dense deployments use 1-2", "stages")


class Mode(StrEnum):
    COLLOCATED = "collocated"
    PD = "pd"
    TRANSFORMERLESS = "transformerless"


# A pool's own hardware profile (name or path); default: the scenario's hardware.
PoolHardware = Annotated[str, Field(min_length=1, max_length=255)]


class PrefillPool(Strict):
    hardware: PoolHardware | None = None
    instances: Instances
    dies: Dies
    tp: Tp = 1
    ep: Ep = 1
    batch_tokens: BatchTokens
    micro_batches: MicroBatches = 1
    redundant_experts: Redundant = 0
    pp: Pp | None = None

    @property
    def stages(self) -> int:
        """Pipeline stages (1 when ``pp`` is not set)."""
        return self.pp or 1


class DecodePool(Strict):
    """Keys every decode pool has; each mode adds where its dies go."""

    hardware: PoolHardware | None = None
    instances: Instances
    tp: Tp = 1
    ep: Ep = 1
    batch: Batch
    micro_batches: MicroBatches = 1
    redundant_experts: Redundant = 0
    # Where the shared experts run: on the token's die (default), or `shared_expert_replicas` copies
    # on expert slots, each token served by one (CloudMatrix-Infer, xDeepServe: 32 replicas).
    shared_experts: Literal["on_token_die", "replicated"] | None = None
    shared_expert_replicas: Redundant | None = None

    @model_validator(mode="after")
    def _shared_placement(self) -> DecodePool:
        k = self.shared_expert_replicas or 0
        if self.shared_experts == "replicated" and k == 0:
            raise ValueError("shared_experts = 'replicated' needs shared_expert_replicas >= 1")
        if self.shared_experts == "on_token_die" and k > 0:
            raise ValueError("shared_expert_replicas > 0 places the shared experts on expert slots: set "
                             "shared_experts = 'replicated' (or leave it out)")
        return self

    @property
    def shared_replicas(self) -> int:
        """Replicas of the shared experts on expert slots (0: on the token's die)."""
        return self.shared_expert_replicas or 0

    @property
    def stages(self) -> int:
        """Pipeline stages of an instance (1 where the pool has no ``pp`` or leaves it out)."""
        return getattr(self, "pp", None) or 1

    @property
    def attention_dies_per_instance(self) -> int:
        """Dies running attention in one instance (they hold the batch)."""
        return self.dies  # type: ignore[attr-defined]

    @property
    def expert_dies_per_instance(self) -> int:
        """Dies running routed experts in one instance."""
        return self.dies  # type: ignore[attr-defined]

    @property
    def dies_per_instance(self) -> int:
        return self.dies  # type: ignore[attr-defined]


class PdDecodePool(DecodePool):
    dies: Dies
    pp: Pp | None = None


class CollocatedDecodePool(DecodePool):
    dies: Dies
    prefill_chunk_tokens: BatchTokens
    pp: Pp | None = None


class TransformerlessDecodePool(DecodePool):
    attention_dies: Dies
    expert_dies: Dies
    domains: Dies

    @property
    def attention_dies_per_instance(self) -> int:
        return self.attention_dies

    @property
    def expert_dies_per_instance(self) -> int:
        return self.expert_dies

    @property
    def dies_per_instance(self) -> int:
        return self.attention_dies + self.expert_dies


class _Layout(Strict):
    scenario: ScenarioFile | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict in the TOML's shape, unset optional keys dropped (stable for JSON)."""
        return self.model_dump(mode="json", exclude_none=True, exclude={"scenario"})

    @property
    def decode_attention_dies(self) -> int:
        """Dies running attention in one decode instance (0 without a decode pool)."""
        d = self.decode  # type: ignore[attr-defined]
        return d.attention_dies_per_instance if d is not None else 0

    @property
    def decode_expert_dies(self) -> int:
        """Dies running routed experts in one decode instance (0 without a decode pool)."""
        d = self.decode  # type: ignore[attr-defined]
        return d.expert_dies_per_instance if d is not None else 0

    @property
    def decode_instance_dies(self) -> int:
        d = self.decode  # type: ignore[attr-defined]
        return d.dies_per_instance if d is not None else 0

    @property
    def pools(self) -> tuple[str, ...]:
        """The pools the layout writes down: both, or one priced alone (the other runs elsewhere)."""
        return tuple(name for name in ("prefill", "decode") if getattr(self, name, None) is not None)

    @property
    def dies(self) -> int:
        """Every die of the layout (all pools, all instances)."""
        d = self.decode  # type: ignore[attr-defined]
        total = d.instances * self.decode_instance_dies if d is not None else 0
        prefill = getattr(self, "prefill", None)
        if prefill is not None:
            total += prefill.instances * prefill.dies
        return total


class _SeparatePools(_Layout):
    """A prefill pool and a decode pool; either may be left out to price the other alone."""

    @model_validator(mode="after")
    def _a_pool(self) -> _SeparatePools:
        if self.prefill is None and self.decode is None:  # type: ignore[attr-defined]
            raise ValueError("a layout needs a [prefill] table, a [decode] table, or both")
        return self


class PdLayout(_SeparatePools):
    mode: Literal[Mode.PD]
    prefill: PrefillPool | None = None
    decode: PdDecodePool | None = None


class CollocatedLayout(_Layout):
    mode: Literal[Mode.COLLOCATED]
    decode: CollocatedDecodePool

    @property
    def prefill(self) -> None:
        """Collocated instances prefill in chunks inside their decode steps: no prefill pool."""
        return None


class TransformerlessLayout(_SeparatePools):
    mode: Literal[Mode.TRANSFORMERLESS]
    prefill: PrefillPool | None = None
    decode: TransformerlessDecodePool | None = None


Layout = PdLayout | CollocatedLayout | TransformerlessLayout
LayoutFile = Annotated[Layout, Field(discriminator="mode")]
_ADAPTER: TypeAdapter[Layout] = TypeAdapter(LayoutFile)
def own_scenario(layout: Layout, scenario: Scenario) -> Scenario:
    """The scenario ``layout`` is priced under: its own ``[scenario]`` table (a planned layout carries
    one, e.g. MTP off), else ``scenario``."""
    return resolve_scenario(layout.scenario) if layout.scenario is not None else scenario


LAYOUT_CLASSES: dict[Mode, type[_Layout]] = {Mode.PD: PdLayout, Mode.COLLOCATED: CollocatedLayout,
                                             Mode.TRANSFORMERLESS: TransformerlessLayout}
DECODE_POOLS: dict[Mode, type[DecodePool]] = {Mode.PD: PdDecodePool, Mode.COLLOCATED: CollocatedDecodePool,
                                              Mode.TRANSFORMERLESS: TransformerlessDecodePool}


def layout_json_schema() -> dict[str, Any]:
    """JSON Schema of a layout file (the union over modes)."""
    return _ADAPTER.json_schema()


def _fail(key: str, message: str, where: str, fix: str) -> None:
    raise LayoutError(f"'{key}' {message}", where=where, fix=fix)


def _decode_keys(mode: Mode) -> set[str]:
    return set(DECODE_POOLS[mode].model_fields)


def _owner(key: str) -> str:
    return " / ".join(m.value for m in Mode if key in _decode_keys(m)) + " mode"


def check_mode_keys(data: dict[str, Any], where: str) -> None:
    """Refuse another mode's keys by name (before the schema), with the mode they belong to."""
    names = ", ".join(m.value for m in Mode)
    if "mode" not in data:
        raise DataFileError(f"field 'mode': required field is missing; add it (one of {names})", where=where)
    try:
        mode = Mode(data["mode"])
    except ValueError:
        raise DataFileError(f"field 'mode': Input should be one of {names} (got {data['mode']!r})",
                            where=where) from None
    decode = data.get("decode")
    if isinstance(decode, dict):
        own = _decode_keys(mode)
        for key in sorted(k for k in decode if k not in own and any(k in _decode_keys(m) for m in Mode)):
            _fail(f"decode.{key}", f"is not a {mode.value} key", where, f"remove it (it belongs to {_owner(key)})")
        fields = DECODE_POOLS[mode].model_fields
        for key in sorted(k for k in _decode_keys(mode) - set(decode) if fields[k].is_required()):
            _fail(f"decode.{key}", f"is required in {mode.value} mode", where, "add it")
    if mode == Mode.COLLOCATED and "prefill" in data:
        _fail("prefill", "is not used in collocated mode", where, "remove [prefill]; set decode.prefill_chunk_tokens")
    if mode != Mode.COLLOCATED and "prefill" not in data and "decode" not in data:
        _fail("decode", f"and 'prefill' are both missing; a {mode.value} layout needs one of them", where,
              "add a [decode] table, a [prefill] table, or both (a pool alone is priced alone)")


def _check_parallel(pool: str, dies: int, tp: int, ep: int, model: ModelSpec, where: str, pp: int = 1) -> None:
    heads = model.attention.num_heads
    if dies % tp:
        _fail(f"{pool}.tp", f"= {tp} does not divide the pool's {dies} dies", where,
              "choose tp dividing dies")
    if pp > 1:
        if model.is_moe:
            _fail(f"{pool}.pp", f"= {pp} but pipeline parallelism is modelled for dense models only ({model.name} "
                  "has routed experts)", where, "set pp = 1 (or leave it out) and spread the experts with ep")
        if dies % (tp * pp):
            _fail(f"{pool}.pp", f"= {pp} with tp = {tp}: tp x pp does not divide the pool's {dies} dies", where,
                  "choose dies a multiple of tp x pp")
        if pp > model.num_layers:
            _fail(f"{pool}.pp", f"= {pp} is more stages than {model.name}'s {model.num_layers} layers", where,
                  "choose pp <= num_layers")
    if heads % tp:
        _fail(f"{pool}.tp", f"= {tp} does not divide the model's {heads} attention heads",
              where, "choose a tp dividing num_heads")
    if ep > 1 and not model.is_moe:
        _fail(f"{pool}.ep", f"= {ep} but {model.name} has no routed experts", where, "set ep = 1")


def _check_experts(pool: str, expert_dies: int, ep: int, redundant: int, model: ModelSpec, where: str,
                   shared: int = 0) -> None:
    if not model.is_moe:
        return
    if expert_dies % ep:
        _fail(f"{pool}.ep", f"= {ep} does not divide the {expert_dies} expert dies", where,
              "choose ep dividing the dies that host experts")
    slots = model.ffn.num_routed_experts + redundant + shared
    if slots % ep:
        what = "routed + redundant" + (" + shared replicas" if shared else "")
        _fail(f"{pool}.ep", f"cannot place {slots} experts ({what}) evenly on {ep} dies",
              where, "change ep, redundant_experts or shared_expert_replicas so that ep divides their sum")


def check_layout(layout: Layout, model: ModelSpec, where: str) -> None:
    """Refuse impossible combinations for this model, naming the key (exit 2)."""
    d = layout.decode
    if layout.prefill is not None:
        p = layout.prefill
        _check_parallel("prefill", p.dies, p.tp, p.ep, model, where, p.stages)
        _check_experts("prefill", p.dies, p.ep, p.redundant_experts, model, where)
    if d is None:
        return
    if isinstance(d, TransformerlessDecodePool):
        if not model.is_moe:
            _fail("mode", "transformerless needs an MoE model", where, "use pd or collocated")
        if d.attention_dies % d.domains:
            _fail("decode.domains", f"= {d.domains} does not divide attention_dies = {d.attention_dies}",
                  where, "choose domains dividing attention_dies")
        _check_parallel("decode", d.attention_dies, d.tp, 1, model, where)
    else:
        _check_parallel("decode", d.dies_per_instance, d.tp, d.ep, model, where, d.stages)
    if d.shared_replicas and not model.ffn.num_shared_experts:
        _fail("decode.shared_expert_replicas", f"= {d.shared_replicas} but {model.name} has no shared experts", where,
              "leave out shared_experts / shared_expert_replicas")
    _check_experts("decode", d.expert_dies_per_instance, d.ep, d.redundant_experts, model, where, d.shared_replicas)
    if d.batch % d.micro_batches:
        _fail("decode.micro_batches", f"= {d.micro_batches} does not divide batch = {d.batch}", where,
              "choose a batch that is a multiple of micro_batches")


def parse_layout(data: dict[str, Any], where: str) -> Layout:
    """Validate a layout dict: another mode's keys by name, then the mode's schema (one line, exit 2)."""
    check_mode_keys(data, where)
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        loc, msg = validation_message(exc)
        tag = f"{data.get('mode')}." if isinstance(data.get("mode"), str) else ""
        loc = loc.removeprefix(tag) if tag and loc.startswith(tag) else loc
        raise DataFileError(f"field '{loc}': {msg}", where=where) from None


def load_layout(path: Path | str) -> Layout:
    """Read a layout TOML (schema only; :func:`check_layout` needs the model)."""
    return parse_layout(read_toml(Path(path)), str(path))


def layout_toml(layout: Layout) -> str:
    """TOML text of a layout, with its [scenario] table when it has one (``--write-layouts``)."""
    import tomli_w

    data = layout.to_dict()
    if layout.scenario is not None:
        data["scenario"] = layout.scenario.model_dump(mode="json", exclude_none=True)
    return tomli_w.dumps(data)
