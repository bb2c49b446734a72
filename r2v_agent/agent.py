"""RoutedAgent: an SLM policy that asks a teacher for help when a calibrated router says so.

At each step (DESIGN §5): the SLM samples K candidates in one batched call; the verifier scores
them; the 15 features are computed; the router gives p_fail; if p_fail > tau the teacher acts,
otherwise the best-verified candidate is used. Every decision is kept in ``last_decision``.

    agent = RoutedAgent.from_pretrained("tiny-random", teacher=OracleTeacher())
    obs, info = env.reset(seed=0); agent.reset(seed=0)
    action = agent.act(obs, info)
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from r2v_agent.errors import ConfigError
from r2v_agent.policy.models import PRESETS, load_model_and_tokenizer, resolve_device
from r2v_agent.policy.prompts import FORMATS, PromptFormat, Turn
from r2v_agent.policy.sampler import TransformersPolicy
from r2v_agent.router.baselines import Router
from r2v_agent.router.features import FEATURE_NAMES, compute_features, features_dict
from r2v_agent.router.model import MLPRouter
from r2v_agent.teacher.base import CallCost, Teacher
from r2v_agent.teacher.openai_http import OpenAITeacher
from r2v_agent.teacher.oracle import OracleTeacher
from r2v_agent.verifier.learned import LearnedVerifier
from r2v_agent.verifier.rules import RuleVerifier

__all__ = ["RoutedAgent", "Decision", "AgentStats"]

CONFIG_VERSION = 1
_MAX_NEW_TOKENS = {"textworld": 16, "terminalbench": 64, "humaneval": 320}


@dataclass
class Decision:
    """Everything that went into one step's choice, so each escalation can be explained."""

    step: int
    candidates: list[dict[str, Any]]
    verifier_scores: list[float]
    chosen: int
    features: dict[str, float]
    p_fail: float
    threshold: float
    actor: str  #: "slm" or "teacher"
    action: str
    cost: dict[str, float]
    teacher_fallback: bool = False
    teacher_error: str | None = None
    slm_seconds: float = 0.0


@dataclass
class AgentStats:
    steps: int = 0
    escalations: int = 0
    cost: CallCost = field(default_factory=CallCost)

    @property
    def llm_share(self) -> float:
        return self.escalations / self.steps if self.steps else 0.0


def infer_family(info: dict[str, Any]) -> str:
    if "admissible_actions" in info:
        return "textworld"
    if "has_solution" in info:
        return "humaneval"
    if "exit_code" in info:
        return "terminalbench"
    return "textworld"


class RoutedAgent:
    """SLM policy + verifier + router + teacher behind ``act(obs, info) -> str``.

    Args:
        policy: the SLM sampler.
        router: maps features to p_fail (an :class:`MLPRouter` or a baseline).
        teacher: who acts on escalation; ``None`` never escalates.
        threshold: tau; the teacher acts when p_fail > tau.
        family: prompt/verifier family; ``None`` infers it from the first ``info``.
        max_steps: episode length used for the ``step_frac`` feature when ``info`` has none.
        verifier: scores candidates; ``None`` uses the per-family :class:`RuleVerifier`.
        history_chars: character budget of the prompt's history (``None``: the format's own).
    """

    def __init__(
        self,
        policy: TransformersPolicy,
        router: Router,
        teacher: Teacher | None = None,
        *,
        threshold: float = 0.5,
        family: str | None = None,
        max_steps: int = 50,
        policy_source: str | None = None,
        verifier: RuleVerifier | LearnedVerifier | None = None,
        history_chars: int | None = None,
    ) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ConfigError(f"threshold must be in [0, 1], got {threshold!r}")
        if family is not None and family not in FORMATS:
            raise ConfigError(f"family {family!r} is not one of {sorted(FORMATS)}")
        self.policy = policy
        self.router = router
        self.teacher = teacher
        self.threshold = float(threshold)
        self.family = family
        self.max_steps = int(max_steps)
        self.policy_source = policy_source
        self.verifier = verifier
        self.history_chars = history_chars
        self.stats = AgentStats()
        self.last_decision: Decision | None = None
        self._turns: list[Turn] = []
        self._episode_escalations = 0
        self._episode_family: str | None = None

    # ------------------------------------------------------------------------------ acting
    def reset(self, seed: int | None = None) -> None:
        """Start a new episode (``seed`` reseeds the SLM's sampling)."""
        self._turns = []
        self._episode_escalations = 0
        self._episode_family = None
        self.last_decision = None
        if seed is not None:
            self.policy.reseed(seed)
        reset_router = getattr(self.router, "reset", None)
        if callable(reset_router):  # routers with per-episode state (the hindsight oracle)
            reset_router(seed)

    def record(self, observation: str, action: str) -> None:
        """Add a step someone else took to the history (replays, counterfactual rollouts)."""
        self._turns.append(Turn(observation, action))

    def act(self, observation: str, info: dict[str, Any]) -> str:
        if self._episode_family is None:  # fixed for the episode from its first info
            self._episode_family = self.family or infer_family(info)
        family = self._episode_family
        fmt: PromptFormat = FORMATS[family]
        if self.history_chars is not None:
            fmt = dataclasses.replace(fmt, max_chars=self.history_chars)
        verifier = self.verifier if self.verifier is not None else RuleVerifier(family)
        self._turns.append(Turn(observation))
        sample = self.policy.sample(
            fmt.messages(self._turns),
            single_line=not fmt.multiline_actions,
            max_new_tokens=_MAX_NEW_TOKENS[family],
        )
        actions = [fmt.extract_action(c.text) for c in sample.candidates]
        scores = verifier.score(observation, actions, info)
        # Best verifier score; ties go to the more likely candidate.
        chosen = max(
            range(len(actions)), key=lambda i: (scores[i], sample.candidates[i].seq_logprob)
        )
        step = len(self._turns) - 1
        features = compute_features(
            sample.candidates,
            chosen,
            scores,
            step=step,
            max_steps=int(info.get("max_episode_steps", self.max_steps)),
            tool_error=bool(info.get("tool_error", False)),
            observation=observation,
            escalations_so_far=self._episode_escalations,
        )
        if getattr(self.router, "uses_hindsight", False):
            # The hindsight oracle (a reference, not deployable) judges the chosen action itself.
            p_fail = float(self.router.hindsight(actions[chosen], info))  # type: ignore[attr-defined]
        else:
            p_fail = float(self.router(features)[0])
        action, actor, cost = actions[chosen], "slm", CallCost()
        fallback, error = False, None
        if self.teacher is not None and p_fail > self.threshold:
            reply = self.teacher.act(
                self._turns, {**info, "task_family": family}, fallback_action=actions[chosen]
            )
            fallback, error, cost = reply.fallback, reply.error, reply.cost
            if not reply.fallback:
                action, actor = reply.action, "teacher"
            self._episode_escalations += 1
            self.stats.escalations += 1
        self.stats.steps += 1
        self.stats.cost += cost
        self._turns[-1] = Turn(observation, action)
        self.last_decision = Decision(
            step=step,
            candidates=[
                {
                    "text": c.text,
                    "action": a,
                    "token_logprobs": c.token_logprobs,
                    "token_entropies": c.token_entropies,
                }
                for c, a in zip(sample.candidates, actions, strict=True)
            ],
            verifier_scores=[float(s) for s in scores],
            chosen=chosen,
            features=features_dict(features),
            p_fail=p_fail,
            threshold=self.threshold,
            actor=actor,
            action=action,
            cost=cost.as_dict(),
            teacher_fallback=fallback,
            teacher_error=error,
            slm_seconds=sample.seconds,
        )
        return action

    # ------------------------------------------------------------------------------ save / load
    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``config.json``, ``router.safetensors`` and the SLM (unless it is a preset)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if not isinstance(self.router, MLPRouter):
            raise ConfigError("save_pretrained saves learned routers (MLPRouter) only")
        self.router.save(directory / "router.safetensors")
        verifier_spec: dict[str, Any] = {"type": "RuleVerifier"}
        if isinstance(self.verifier, LearnedVerifier):
            self.verifier.save(directory / "verifier.safetensors")
            verifier_spec = {**self.verifier.spec(), "path": "verifier.safetensors"}
        if self.policy_source in PRESETS and self.policy_source != "tiny-random":
            policy = {"preset": self.policy_source}
        else:  # weights may have been trained: save them
            if self.policy.base_model is None:
                raise ConfigError(
                    "this policy dropped its full-precision weights (keep_base=False)"
                )
            self.policy.base_model.save_pretrained(directory / "policy")
            self.policy.tokenizer.save_pretrained(directory / "policy")
            policy = {"path": "policy"}
        import torch
        import transformers

        config = {
            "format": "r2v-agent",
            "version": CONFIG_VERSION,
            "policy": {
                **policy,
                "k": self.policy.k,
                "temperature": self.policy.temperature,
                "quantize": self.policy.quantize,
            },
            "router": self.router.spec(),
            "verifier": verifier_spec,
            "history_chars": self.history_chars,
            "teacher": self.teacher.spec() if self.teacher else None,
            "threshold": self.threshold,
            "family": self.family,
            "max_steps": self.max_steps,
            "feature_names": list(FEATURE_NAMES),
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        }
        (directory / "config.json").write_text(json.dumps(config, indent=2))

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        *,
        teacher: Teacher | None = None,
        threshold: float | None = None,
        k: int | None = None,
        seed: int = 0,
        family: str | None = None,
        quantize: str | None = "auto",
        device: str | None = None,
    ) -> RoutedAgent:
        """A preset (``"tiny-random"``, ``"smollm2-135m"``: untrained router, rule verifier,
        :class:`OracleTeacher` unless ``teacher`` is given) or a saved agent directory.

        ``quantize="auto"`` runs SmolLM2 int8-quantised on CPU (see :class:`TransformersPolicy`)
        and in full precision elsewhere; ``None`` keeps full precision. ``device`` places the
        SLM (``"cuda"``, ``"auto"`` = a GPU when torch sees one; default: CPU)."""
        name = str(name_or_path)
        device = resolve_device(device)
        on_cpu = device == "cpu"
        if name in PRESETS:
            model, tokenizer = load_model_and_tokenizer(name, seed=seed)
            default = "int8" if name == "smollm2-135m" and on_cpu else None
            mode = default if quantize == "auto" else quantize
            # A preset is saved by name, so its full-precision weights need not stay in memory.
            policy = TransformersPolicy(
                model,
                tokenizer,
                k=k or 5,
                seed=seed,
                quantize=mode,
                keep_base=mode is None,
                device=device,
            )
            return cls(
                policy,
                MLPRouter(seed=seed),
                teacher or OracleTeacher(),
                threshold=0.5 if threshold is None else threshold,
                family=family,
                policy_source=name,
            )
        directory = Path(name)
        config_path = directory / "config.json"
        if not config_path.is_file():
            raise ConfigError(
                f"{name!r} is neither a preset ({', '.join(PRESETS)}) nor a saved agent "
                "directory with config.json"
            )
        config = json.loads(config_path.read_text())
        if config.get("format") != "r2v-agent" or config.get("version") != CONFIG_VERSION:
            raise ConfigError(
                f"{config_path} is not an r2v-agent config of version {CONFIG_VERSION}"
            )
        if config.get("feature_names") != list(FEATURE_NAMES):
            raise ConfigError(f"{config_path} was saved with other router features")
        spec = config["policy"]
        source = spec.get("preset") or str(directory / spec["path"])
        model, tokenizer = load_model_and_tokenizer(source, seed=seed)
        saved_mode = spec.get("quantize") if on_cpu else None  # int8 is CPU-only
        mode = saved_mode if quantize == "auto" else quantize
        policy = TransformersPolicy(
            model,
            tokenizer,
            k=k or spec["k"],
            temperature=spec["temperature"],
            seed=seed,
            quantize=mode,
            keep_base=mode is None,
            device=device,
        )
        verifier: LearnedVerifier | None = None
        if config.get("verifier", {}).get("type") == "LearnedVerifier":
            verifier = LearnedVerifier.load(directory / config["verifier"]["path"])
        return cls(
            policy,
            MLPRouter.load(directory / "router.safetensors"),
            teacher if teacher is not None else _teacher_from_spec(config.get("teacher")),
            threshold=config["threshold"] if threshold is None else threshold,
            family=family or config.get("family"),
            max_steps=config.get("max_steps", 50),
            policy_source=spec.get("preset"),
            verifier=verifier,
            history_chars=config.get("history_chars"),
        )

    def decision_dict(self) -> dict[str, Any] | None:
        return asdict(self.last_decision) if self.last_decision else None


def _teacher_from_spec(spec: dict[str, Any] | None) -> Teacher | None:
    if spec is None:
        return None
    if spec["type"] == "OracleTeacher":
        return OracleTeacher(model=spec.get("model", "oracle"))
    if spec["type"] == "OpenAITeacher":
        import os

        return OpenAITeacher(
            spec["base_url"],
            spec["model"],
            timeout=spec["timeout"],
            max_retries=spec["max_retries"],
            api_key=os.environ.get("R2V_TEACHER_API_KEY"),
        )
    if spec["type"] == "TransformersTeacher":
        from r2v_agent.teacher.local import TransformersTeacher

        return TransformersTeacher(spec["model"])
    raise ConfigError(f"unknown teacher type {spec['type']!r} in the saved config")
