"""Process verifiers: score candidate actions V(context, action) in [0, 1]."""

from __future__ import annotations

from r2v_agent.verifier.rules import RuleVerifier

__all__ = ["RuleVerifier"]
