"""superpod-planner: capacity planning for serving large MoE LLMs on SuperPod-scale hardware."""

__version__ = "0.1.0"
