"""One entropy definition per agent: top-N entropies computed alike by every backend, the
one-line cut rule for server-generated sequences, and the refusal of a mismatched backend."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from r2v_agent import RoutedAgent  # noqa: E402
from r2v_agent.errors import ConfigError  # noqa: E402
from r2v_agent.policy.base import (  # noqa: E402
    check_entropy_support,
    cut_action,
    entropy_definition,
    parse_entropy_definition,
    top_k_entropy,
)
from r2v_agent.policy.build import build_policy  # noqa: E402
from r2v_agent.policy.models import build_tiny_random  # noqa: E402
from r2v_agent.policy.prompts import FORMATS, Turn  # noqa: E402

MESSAGES = FORMATS["textworld"].messages([Turn("You are in a kitchen. A door leads north.")])


def test_top_k_entropy_against_hand_computed_values() -> None:
    p = np.array([0.5, 0.25, 0.125, 0.125])
    logp = np.log(p)[None, :]
    full = -(0.5 * math.log(0.5) + 0.25 * math.log(0.25) + 2 * 0.125 * math.log(0.125))
    assert top_k_entropy(logp, None)[0] == pytest.approx(full)
    # top 2: only the two largest terms, not renormalised
    top2 = -(0.5 * math.log(0.5) + 0.25 * math.log(0.25))
    assert top_k_entropy(logp, 2)[0] == pytest.approx(top2)
    # order of the row does not matter; N >= vocabulary is the full entropy
    assert top_k_entropy(logp[:, ::-1], 2)[0] == pytest.approx(top2)
    assert top_k_entropy(logp, 10)[0] == pytest.approx(full)


def test_definition_names_round_trip_and_bad_names_are_refused() -> None:
    for top_k in (None, 1, 20):
        assert parse_entropy_definition(entropy_definition(top_k)) == top_k
    for bad in ("top0", "top", "topx", "partial", ""):
        with pytest.raises(ValueError, match="full' or 'topN"):
            parse_entropy_definition(bad)


@pytest.mark.parametrize(
    "tokens, expected",
    [
        ([5, 6, 7], [5, 6, 7]),  # no break: all of it
        ([5, 10, 7], [5]),  # a break after text ends the action
        ([10, 10, 5, 6, 10, 7], [5, 6]),  # leading breaks are skipped
        ([5, 2, 7], [5]),  # an end-of-generation token ends it
        ([10, 2], []),  # nothing but a break and the end: empty
    ],
)
def test_cut_action_applies_the_decoding_rule(tokens: list[int], expected: list[int]) -> None:
    logps = [-float(t) for t in tokens]
    kept, kept_logps, kept_ents = cut_action(
        tokens,
        logps,
        [float(t) for t in tokens],
        is_stop=lambda t: t == 2,
        is_line_break=lambda t: t == 10,
        single_line=True,
    )
    assert kept == expected and kept_logps == [-float(t) for t in expected]
    assert kept_ents == [float(t) for t in expected]
    # multi-line actions keep line breaks and stop only at the end token
    multi = cut_action(
        tokens,
        logps,
        logps,
        is_stop=lambda t: t == 2,
        is_line_break=lambda t: t == 10,
        single_line=False,
    )[0]
    assert multi == tokens[: tokens.index(2)] if 2 in tokens else multi == tokens


def test_transformers_backend_reports_the_top_n_entropy() -> None:
    model, tokenizer = build_tiny_random(seed=0)
    full = build_policy("transformers", model, tokenizer, k=3, seed=4)
    top = build_policy("transformers", model, tokenizer, k=3, seed=4, entropy_top_k=5)
    a = full.sample(MESSAGES, max_new_tokens=6)
    b = top.sample(MESSAGES, max_new_tokens=6)
    # same draws (the definition changes only what is reported) ...
    assert [c.token_ids for c in a.candidates] == [c.token_ids for c in b.candidates]
    assert [c.token_logprobs for c in a.candidates] == [c.token_logprobs for c in b.candidates]
    # ... and each top-5 entropy is the hand-computed sum over the 5 likeliest tokens
    c = b.candidates[0]
    ids = torch.tensor(
        [
            tokenizer(
                tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False),
                add_special_tokens=False,
            )["input_ids"]
            + c.token_ids
        ]
    )
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0].float(), -1)
    start = ids.shape[1] - len(c.token_ids) - 1
    for j, h in enumerate(c.token_entropies):
        values = logp[start + j].topk(5).values
        # Generation runs with a KV cache, this check in one pass: float32 rounding differs by a
        # few 1e-5 (seen: 4.2e-5 on 0.145); top-5 vs full entropy differ by far more.
        assert h == pytest.approx(float(-(values.exp() * values).sum()), abs=2e-4)
        assert h <= a.candidates[0].token_entropies[j] + 1e-6


def test_a_top_n_backend_refuses_a_router_trained_on_full_entropies(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="top-N log-probs only"):
        check_entropy_support("openai", None)
    check_entropy_support("openai", 20)
    check_entropy_support("transformers", None)
    agent = RoutedAgent.from_pretrained("tiny-random", k=2)
    agent.save_pretrained(tmp_path / "agent")
    config = json.loads((tmp_path / "agent" / "config.json").read_text())
    assert config["policy"]["entropy"] == "full"
    # refused before any connection is tried (the URL points nowhere)
    with pytest.raises(ConfigError, match="trained on full-vocabulary entropies"):
        RoutedAgent.from_pretrained(
            tmp_path / "agent", backend="openai", backend_options={"url": "http://127.0.0.1:9"}
        )
    # a malformed definition in a saved config names the field
    config["policy"]["entropy"] = "most"
    (tmp_path / "agent" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="policy.entropy"):
        RoutedAgent.from_pretrained(tmp_path / "agent")


def test_backend_options_are_checked() -> None:
    model, tokenizer = build_tiny_random(seed=0)
    with pytest.raises(ConfigError, match="takes no option"):
        build_policy("transformers", model, tokenizer, backend_options={"url": "x"})
    with pytest.raises(ConfigError, match="needs the SLM server's URL"):
        build_policy("openai", None, tokenizer, entropy_top_k=20)
    with pytest.raises(ConfigError, match="http"):
        build_policy(
            "openai", None, tokenizer, entropy_top_k=20, backend_options={"url": "ftp://x"}
        )


def test_an_agent_trained_on_top_n_entropies_records_it_and_passes_the_check(tmp_path) -> None:
    from r2v_agent.policy.openai_compat import SLMServerError
    from r2v_agent.router.baselines import EntropyRouter

    model, tokenizer = build_tiny_random(seed=0)
    policy = build_policy("transformers", model, tokenizer, k=2, entropy_top_k=20)
    RoutedAgent(policy, EntropyRouter(), None).save_pretrained(tmp_path / "agent")
    config = json.loads((tmp_path / "agent" / "config.json").read_text())
    assert config["policy"]["entropy"] == "top20"
    again = RoutedAgent.from_pretrained(tmp_path / "agent")
    assert again.policy.entropy_top_k == 20  # transformers computes the same definition
    # a top-N backend accepts it: what stops it here is the absent server, not the check
    with pytest.raises(SLMServerError, match="is it running"):
        RoutedAgent.from_pretrained(
            tmp_path / "agent",
            backend="openai",
            backend_options={"url": "http://127.0.0.1:9/v1", "timeout": 1, "max_retries": 0},
        )
