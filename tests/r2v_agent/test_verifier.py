from __future__ import annotations

from pathlib import Path

import pytest

from r2v_agent.verifier import RuleVerifier

INFO_TW = {"admissible_actions": ["go north", "take knife", "look"]}


def test_rule_prior_per_family() -> None:
    tw = RuleVerifier("textworld")
    assert tw.score("", ["take knife", "dance", ""], INFO_TW) == [0.80, 0.15, 0.0]
    assert tw.score("", ["anything"], {}) == [0.5]
    he = RuleVerifier("humaneval")
    good, bad = "```python\ndef f():\n    return 1\n```", "```python\ndef f(:\n```"
    assert he.score("", [good, bad, "submit"], {"has_solution": True}) == [0.70, 0.10, 0.60]
    tb = RuleVerifier("terminalbench")
    assert tb.score("", ["ls -la | wc -l", "echo 'unterminated", "submit"], {}) == [0.60, 0.10, 0.5]


def test_learned_verifier_uses_the_offline_minilm(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from r2v_agent.errors import ConfigError
    from r2v_agent.verifier.learned import LearnedVerifier, minilm_dir

    try:  # only a missing package skips; any other failure is the test's to report
        minilm_dir()
    except ConfigError as exc:
        pytest.skip(f"MiniLM package not installed: {exc}")
    verifier = LearnedVerifier("textworld")
    actions = ["take knife", "go north", "dance wildly"]
    # Untrained: exactly the rule prior.
    assert verifier.score("You see a knife.", actions, INFO_TW) == [0.80, 0.80, 0.15]
    emb = verifier.embed("You see a knife on the table.", actions)
    assert emb.shape == (3, 384)
    sims = (emb @ emb.T).tolist()
    assert sims[0][0] == pytest.approx(1.0, abs=1e-4) and sims[0][1] < 0.999
    verifier.trained = True
    scores = verifier.score("You see a knife.", actions, INFO_TW)
    assert len(scores) == 3 and all(0.0 < s < 1.0 for s in scores)
    verifier.save(tmp_path / "verifier.safetensors")
    again = LearnedVerifier.load(tmp_path / "verifier.safetensors")
    assert again.trained and again.score("You see a knife.", actions, INFO_TW) == pytest.approx(
        scores
    )
