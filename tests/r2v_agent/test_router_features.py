from __future__ import annotations

import inspect

import numpy as np
import pytest

from r2v_agent.policy.prompts import FORMATS, Turn, format_for
from r2v_agent.router import (
    FEATURE_NAMES,
    AlwaysEscalate,
    Candidate,
    EntropyRouter,
    NeverEscalate,
    RandomRouter,
    VerifierRouter,
    compute_features,
    features_dict,
)


def _candidates() -> list[Candidate]:
    return [
        Candidate("take knife", [-0.1, -0.3], [0.5, 1.5]),
        Candidate("take knife", [-0.2, -0.2], [0.4, 0.6]),
        Candidate("go north", [-2.0, -1.0], [2.0, 1.0]),
    ]


def test_feature_vector_has_15_named_values_computed_by_hand() -> None:
    f = compute_features(
        _candidates(),
        0,
        [0.9, 0.8, 0.2],
        step=3,
        max_steps=10,
        tool_error=True,
        observation="x" * 99,
        escalations_so_far=1,
    )
    assert f.shape == (15,) and f.dtype == np.float32 and len(FEATURE_NAMES) == 15
    d = features_dict(f)
    assert d["chosen_entropy_mean"] == pytest.approx(1.0)
    assert d["chosen_entropy_max"] == pytest.approx(1.5)
    assert d["chosen_logprob_mean"] == pytest.approx(-0.2)
    assert d["chosen_logprob_min"] == pytest.approx(-0.3)
    assert d["candidates_seq_logprob_mean"] == pytest.approx((-0.4 - 0.4 - 3.0) / 3)
    assert d["agreement"] == pytest.approx(2 / 3) and d["distinct_ratio"] == pytest.approx(2 / 3)
    assert d["verifier_best"] == pytest.approx(0.9) and d["verifier_mean"] == pytest.approx(19 / 30)
    assert d["verifier_std"] == pytest.approx(np.std([0.9, 0.8, 0.2]), abs=1e-6)
    assert d["verifier_margin"] == pytest.approx(0.1)
    assert d["step_frac"] == pytest.approx(0.3) and d["tool_error"] == 1.0
    assert d["obs_log_len"] == pytest.approx(np.log(100))
    assert d["escalation_share"] == pytest.approx(1 / 3)


def test_features_never_see_perturbation_details() -> None:
    params = inspect.signature(compute_features).parameters
    assert not any("perturb" in name or name == "info" for name in params)


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="chosen=5"):
        compute_features(
            _candidates(),
            5,
            [0.1] * 3,
            step=0,
            max_steps=5,
            tool_error=False,
            observation="",
            escalations_so_far=0,
        )
    with pytest.raises(ValueError, match="2 verifier scores for 3"):
        compute_features(
            _candidates(),
            0,
            [0.1] * 2,
            step=0,
            max_steps=5,
            tool_error=False,
            observation="",
            escalations_so_far=0,
        )


def test_baseline_routers() -> None:
    f = np.stack(
        [
            compute_features(
                _candidates(),
                i,
                [0.9, 0.5, 0.1],
                step=1,
                max_steps=5,
                tool_error=False,
                observation="o",
                escalations_so_far=0,
            )
            for i in range(3)
        ]
    )
    assert NeverEscalate()(f).tolist() == [0, 0, 0] and AlwaysEscalate()(f).tolist() == [1, 1, 1]
    entropy = EntropyRouter()(f)
    assert entropy[2] > entropy[0] > entropy[1]  # higher entropy, higher risk
    assert np.allclose(VerifierRouter()(f), 0.1)
    draws = RandomRouter(0.3, seed=0)(np.zeros((10_000, 15)))
    assert 0.28 < draws.mean() < 0.32 and set(np.unique(draws)) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="rate"):
        RandomRouter(1.5)


def test_prompt_formats_window_history_and_extract_actions() -> None:
    fmt = format_for("R2V/TextWorld-Cooking-v0")
    turns = (
        [Turn("TASK: cook. " + "t" * 100)]
        + [Turn("o" * 900, "look") for _ in range(5)]
        + [Turn("now")]
    )
    messages = fmt.messages(turns)
    assert messages[0]["role"] == "system" and messages[1]["content"].startswith("TASK")
    assert sum(len(m["content"]) for m in messages[1:]) <= fmt.max_chars + 10
    assert messages[-1]["content"] == "now"
    assert fmt.extract_action("Sure! Action: take knife\nBecause...") == "take knife"
    he = FORMATS["humaneval"]
    assert (
        he.extract_action("Here:\n```python\ndef f():\n    return 1\n```")
        == "```python\ndef f():\n    return 1\n```"
    )
    assert he.extract_action("submit") == "submit"
    tb = format_for("R2V/TerminalBench-v0")
    assert tb.extract_action("Run this:\n```bash\nls -la /app\n```") == "ls -la /app"
    with pytest.raises(KeyError):
        format_for("R2V/Unknown-v0")
