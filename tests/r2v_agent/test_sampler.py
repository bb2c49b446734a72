"""The SLM sampler's int8 mode: only the output head is quantised, and the model's answers stay."""

from __future__ import annotations

import pytest

from r2v_agent.policy.models import load_model_and_tokenizer
from r2v_agent.policy.prompts import Turn, format_for
from r2v_agent.policy.sampler import TransformersPolicy

torch = pytest.importorskip("torch")

PROMPTS = [
    "-= Kitchen =-\nYou are in a kitchen. There is an exit to the north. Your task: go north, "
    "then take the key from the table.",
    "-= Cellar =-\nA locked chest stands here. You carry a small key. Your task: unlock the chest.",
    "-= Garden =-\nThere is an apple on the ground and a door to the east. Your task: eat the apple.",
]


def _next_token_logprobs(model, tokenizer, prompt: str):
    messages = format_for("textworld").messages([Turn(prompt)])
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        return model(input_ids=ids).logits[0, -1].float().log_softmax(-1)


def _kl(p_log, q_log) -> float:
    return float((p_log.exp() * (p_log - q_log)).sum())


def test_int8_quantises_only_the_head_and_keeps_the_base() -> None:
    model, tokenizer = load_model_and_tokenizer("tiny-random")
    policy = TransformersPolicy(model, tokenizer, quantize="int8", keep_base=True)
    quantised = policy.model
    assert type(quantised.lm_head).__name__ == "Linear" and quantised.lm_head is not model.lm_head
    assert "quantized" in type(quantised.lm_head).__module__
    for block in quantised.model.layers:
        assert type(block.self_attn.q_proj) is torch.nn.Linear
        assert type(block.mlp.down_proj) is torch.nn.Linear
    assert policy.base_model is model and type(model.lm_head) is torch.nn.Linear
    for prompt in PROMPTS:
        ref = _next_token_logprobs(model, tokenizer, prompt)
        out = _next_token_logprobs(quantised, tokenizer, prompt)
        assert _kl(ref, out) < 1e-2


def test_int8_in_place_frees_the_full_precision_head() -> None:
    model, tokenizer = load_model_and_tokenizer("tiny-random")
    policy = TransformersPolicy(model, tokenizer, quantize="int8", keep_base=False)
    assert policy.base_model is None and policy.model is model
    assert "quantized" in type(model.lm_head).__module__
    assert policy.sample([{"role": "user", "content": "hi"}], k=2).candidates  # still samples


@pytest.mark.slow
def test_int8_smollm2_keeps_its_greedy_answers() -> None:
    # Quantising every linear layer (the earlier int8 mode) gave KL of 1.5-7.9 nats here and
    # changed every greedy action; the head alone must leave the answers as they are.
    model, tokenizer = load_model_and_tokenizer("smollm2-135m")
    policy = TransformersPolicy(model, tokenizer, quantize="int8", keep_base=True)
    for prompt in PROMPTS:
        ref = _next_token_logprobs(model, tokenizer, prompt)
        out = _next_token_logprobs(policy.model, tokenizer, prompt)
        assert _kl(ref, out) < 0.2  # measured 0.06-0.13 (the base model is unsure: 3.8-4.4 nats)
        assert int(ref.argmax()) == int(out.argmax())


def test_device_names_are_checked() -> None:
    from r2v_agent.errors import ConfigError
    from r2v_agent.policy.models import resolve_device

    assert resolve_device(None) == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="not a torch device"):
        resolve_device("tpu-please")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="sees no GPU"):
            resolve_device("cuda")


def test_int8_refuses_a_gpu_model() -> None:
    model, tokenizer = load_model_and_tokenizer("tiny-random")
    model.to("meta")  # stands for "not on the CPU" without a GPU; nothing runs on it
    with pytest.raises(ValueError, match="CPU only"):
        TransformersPolicy(model, tokenizer, quantize="int8")


def _greedy_and_sampled(policy: TransformersPolicy) -> tuple[list[str], list[str]]:
    messages = format_for("textworld").messages([Turn(PROMPTS[0])])
    policy.reseed(3)
    sampled = [c.text for c in policy.sample(messages, k=3).candidates]
    greedy = [c.text for c in policy.sample(messages, greedy=True).candidates]
    return greedy, sampled


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_sampler_on_a_gpu_matches_the_cpu() -> None:
    # Sampling draws from the CPU generator on every device: same seed, same candidates (up to
    # float differences in the logits, so the greedy answer is the comparison that must hold).
    model, tokenizer = load_model_and_tokenizer("tiny-random")
    cpu = TransformersPolicy(model, tokenizer, k=3)
    greedy_cpu, sampled_cpu = _greedy_and_sampled(cpu)
    gpu_model, _ = load_model_and_tokenizer("tiny-random")
    gpu = TransformersPolicy(gpu_model, tokenizer, k=3, device="cuda")
    assert gpu.device.type == "cuda"
    greedy_gpu, sampled_gpu = _greedy_and_sampled(gpu)
    assert greedy_gpu == greedy_cpu
    assert len(sampled_gpu) == 3


def test_an_explicit_cpu_device_keeps_the_candidates() -> None:
    model, tokenizer = load_model_and_tokenizer("tiny-random")
    here = _greedy_and_sampled(TransformersPolicy(model, tokenizer, k=3))
    again, _ = load_model_and_tokenizer("tiny-random")
    assert _greedy_and_sampled(TransformersPolicy(again, tokenizer, k=3, device="cpu")) == here


def test_agents_and_eval_runs_name_their_device() -> None:
    from r2v_agent.agent import RoutedAgent
    from r2v_agent.errors import ConfigError
    from r2v_agent.evaluation.run import main as eval_main

    agent = RoutedAgent.from_pretrained("tiny-random", device="auto")
    assert agent.policy.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="not a torch device"):
        RoutedAgent.from_pretrained("tiny-random", device="gpu0")
    code = eval_main(
        ["--env", "R2V/TextWorld-v0", "--agent", "x", "--out", "o", "--device", "gpu0"]
    )
    assert code == 2  # refused before any worker starts
