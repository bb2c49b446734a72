"""Evaluation sweeps over methods x tasks x perturbation seeds (``r2v eval``, ``benchmarks/run.py``)."""

from __future__ import annotations

__all__ = ["methods", "run"]
