"""The routed agent (SLM policy + verifier + calibrated router + teacher) and its training.

The run-time agent and the training pipeline land in later milestones; see DESIGN.md §5-§6.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
