"""Attention kinds, one class each: shape, weights, KV cache and roofline ops of one layer.

:mod:`planner.attention.base` is the interface, :mod:`planner.attention.registry` maps a model
card's ``attention.kind`` to its class.  Adding a kind touches its class file, the registry and
the model-card schema (``AttentionKind`` in :mod:`planner.inputs.files`).
"""
