"""Process verifiers: score candidate actions V(context, action) in [0, 1]."""

from __future__ import annotations

from r2v_agent.verifier.rules import RuleVerifier

__all__ = ["RuleVerifier", "LearnedVerifier"]


def __getattr__(name: str):  # the learned verifier imports torch and transformers
    if name == "LearnedVerifier":
        from r2v_agent.verifier.learned import LearnedVerifier

        return LearnedVerifier
    raise AttributeError(name)
