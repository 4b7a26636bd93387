"""Model card ``attention.kind`` -> attention class.

To add a kind: write its class (a subclass of :class:`~planner.attention.base.Attention`),
list it here, and add its value (and any new fields) to the model-card schema
(``AttentionKind`` / ``ModelAttention`` in :mod:`planner.inputs.files`).
"""

from __future__ import annotations

from planner.attention.base import Attention
from planner.attention.gqa import GqaAttention
from planner.attention.mla import MlaAttention
from planner.inputs.files import ModelAttention

KINDS: dict[str, type[Attention]] = {
    "mha": GqaAttention,
    "gqa": GqaAttention,
    "mla": MlaAttention,
}


def attention_of(section: ModelAttention, hidden: int) -> Attention:
    """The attention object of a validated ``[attention]`` table (``hidden`` = model width)."""
    return KINDS[section.kind.value].from_section(section, hidden)
