"""The routed agent (SLM policy + verifier + calibrated router + teacher) and its training.

Heavy parts (torch, transformers) load when an agent is built, not on import.
"""

from __future__ import annotations

__all__ = ["RoutedAgent", "__version__"]

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "RoutedAgent":
        from r2v_agent.agent import RoutedAgent

        return RoutedAgent
    raise AttributeError(name)
