"""The routed agent (SLM policy + verifier + calibrated router + teacher) and its training.

Heavy parts (torch, transformers) load when an agent is built, not on import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from r2v_agent._version import __version__

if TYPE_CHECKING:  # type checkers see the real class; at run time it loads on first use
    from r2v_agent.agent import RoutedAgent

__all__ = ["RoutedAgent", "__version__"]


def __getattr__(name: str) -> object:
    if name == "RoutedAgent":
        from r2v_agent.agent import RoutedAgent

        return RoutedAgent
    raise AttributeError(name)
