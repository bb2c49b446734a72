"""RoutedAgent: an SLM policy that asks a teacher for help when a calibrated router says so.

At each step (DESIGN §5): the SLM samples K candidates in one batched call; the verifier scores
them; the 15 features are computed; the router gives p_fail; if p_fail > tau the teacher acts,
otherwise the best-verified candidate is used. Every decision is kept in ``last_decision``.

    agent = RoutedAgent.from_pretrained("tiny-random", teacher=OracleTeacher())
    obs, info = env.reset(seed=0); agent.reset(seed=0)
    action = agent.act(obs, info)
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from r2v_agent.errors import ConfigError
from r2v_agent.policy.base import (
    DEFAULT_TOP_K,
    TOP_K_ONLY,
    Policy,
    SampleResult,
    entropy_definition,
    parse_entropy_definition,
)
from r2v_agent.policy.build import build_policy, needs_weights
from r2v_agent.policy.models import (
    PRESETS,
    load_model_and_tokenizer,
    load_tokenizer,
    resolve_device,
    source_dir,
)
from r2v_agent.policy.prompts import FORMATS, PromptFormat, Turn
from r2v_agent.router.baselines import EntropyRouter, Router, StepContext
from r2v_agent.router.features import FEATURE_NAMES, compute_features, features_dict
from r2v_agent.router.saving import load_router, save_router
from r2v_agent.teacher.base import CallCost, Teacher
from r2v_agent.teacher.openai_http import OpenAITeacher
from r2v_agent.teacher.oracle import OracleTeacher
from r2v_agent.verifier.learned import LearnedVerifier
from r2v_agent.verifier.rules import RuleVerifier

__all__ = ["RoutedAgent", "Decision", "AgentStats", "read_agent_config", "PRESET_THRESHOLD"]

logger = logging.getLogger(__name__)

CONFIG_VERSION = 1

#: A preset has no trained router, and an untrained MLP's p_fail is noise. Until one is trained
#: (``r2v pipeline``), the entropy router stands in: p_fail = 1 - exp(-H), H the chosen
#: action's mean token entropy, so tau = 0.5 escalates when H > ln 2 = 0.69 nats.
PRESET_THRESHOLD = 0.5


def _preset_router_note(tau: float) -> str:
    """What the stand-in router does at ``tau`` (p_fail = 1 - exp(-H) > tau <=> H > -ln(1 - tau))."""
    if tau >= 1.0:
        cut = "never"
    else:
        cut = f"when the chosen action's mean token entropy exceeds {-math.log1p(-tau):.2f} nats"
    return (
        f"no trained router: the entropy baseline stands in (tau = {tau:g}: escalates {cut}); "
        "train one with `r2v pipeline`"
    )


class _Keep:
    """Marks an argument left as it is (``None`` is a meaningful teacher: none)."""


_KEEP = _Keep()


@dataclass
class Assessment:
    """What the verifier and router make of one step's K candidates."""

    actions: list[str]  #: each candidate's action (the family's extraction of its text)
    scores: list[float]  #: verifier scores
    chosen: int  #: the best-verified candidate (ties: the likelier)
    features: dict[str, float]  #: the router's features, by name
    p_fail: float


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
    router: str = ""  #: the router's type
    router_note: str | None = None  #: set when a baseline stands in for an untrained router


@dataclass
class AgentStats:
    steps: int = 0
    escalations: int = 0
    cost: CallCost = field(default_factory=CallCost)

    @property
    def llm_share(self) -> float:
        return self.escalations / self.steps if self.steps else 0.0


class RoutedAgent:
    """SLM policy + verifier + router + teacher behind ``act(obs, info) -> str``.

    Args:
        policy: the SLM sampler (any :class:`~r2v_agent.policy.base.Policy` backend).
        router: maps features to p_fail (an :class:`MLPRouter` or a baseline).
        teacher: who acts on escalation; ``None`` never escalates.
        threshold: tau; the teacher acts when p_fail > tau.
        family: prompt/verifier family; ``None`` takes the one the env declares
            (``info["family"]``, from its ``metadata``).
        max_steps: episode length used for the ``step_frac`` feature when ``info`` has none.
        verifier: scores candidates; ``None`` uses the per-family :class:`RuleVerifier`.
        history_chars: character budget of the prompt's history (``None``: the format's own).
        action_log: name the actions of the steps the history budget drops in the prompt
            (:attr:`PromptFormat.action_log`); an agent is trained with one setting and keeps it.
        router_note: why this router is used, when it is a stand-in (recorded in every
            decision); presets set it, since they have no trained router.
    """

    def __init__(
        self,
        policy: Policy,
        router: Router,
        teacher: Teacher | None = None,
        *,
        threshold: float = 0.5,
        family: str | None = None,
        max_steps: int = 50,
        policy_source: str | None = None,
        verifier: RuleVerifier | LearnedVerifier | None = None,
        history_chars: int | None = None,
        action_log: bool = False,
        router_note: str | None = None,
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
        self.action_log = bool(action_log)
        self.router_note = router_note
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
        self.router.reset(seed)

    def record(self, observation: str, action: str) -> None:
        """Add a step someone else took to the history (replays, counterfactual rollouts)."""
        self._turns.append(Turn(observation, action))

    def format_of(self, family: str) -> PromptFormat:
        """The prompt format of ``family`` with this agent's history budget and action log."""
        fmt: PromptFormat = FORMATS[family]
        if self.history_chars is not None:
            fmt = dataclasses.replace(fmt, max_chars=self.history_chars)
        if self.action_log:
            fmt = dataclasses.replace(fmt, action_log=True)
        return fmt

    @staticmethod
    def generation_options(family: str) -> dict[str, Any]:
        """``family``'s generation limits, as the policy's ``sample``/``sample_many`` take them."""
        fmt = FORMATS[family]
        return {"single_line": not fmt.multiline_actions, "max_new_tokens": fmt.max_new_tokens}

    def sample_step(self, messages: list[dict[str, str]], family: str) -> SampleResult:
        """The SLM's K candidates for chat ``messages``, with ``family``'s generation limits."""
        return self.policy.sample(messages, **self.generation_options(family))

    def assess(
        self,
        sample: SampleResult,
        *,
        observation: str,
        info: dict[str, Any],
        family: str,
        step: int,
        escalations_so_far: int,
    ) -> Assessment:
        """Verifier scores, the chosen candidate, the router's features and p_fail for one
        step's ``sample`` (what :meth:`act` decides on; ``r2v serve`` calls it per request)."""
        fmt = self.format_of(family)
        verifier = self.verifier if self.verifier is not None else RuleVerifier(family)
        actions = [fmt.extract_action(c.text) for c in sample.candidates]
        scores = [float(s) for s in verifier.score(observation, actions, info)]
        # Best verifier score; ties go to the more likely candidate.
        chosen = max(
            range(len(actions)), key=lambda i: (scores[i], sample.candidates[i].seq_logprob)
        )
        features = compute_features(
            sample.candidates,
            chosen,
            scores,
            step=step,
            max_steps=int(info.get("max_episode_steps", self.max_steps)),
            tool_error=bool(info.get("tool_error", False)),
            observation=observation,
            escalations_so_far=escalations_so_far,
        )
        p_fail = self.router.step_p_fail(features, StepContext(actions[chosen], step, info))
        return Assessment(actions, scores, chosen, features_dict(features), p_fail)

    def act(self, observation: str, info: dict[str, Any]) -> str:
        if self._episode_family is None:  # fixed for the episode from its first info
            self._episode_family = self.family or info.get("family")
            if self._episode_family not in FORMATS:
                raise ConfigError(
                    f"the env declares no known family (info['family'] = {info.get('family')!r});"
                    f" give the agent one: family= one of {sorted(FORMATS)}"
                )
        family = self._episode_family
        self._turns.append(Turn(observation))
        sample = self.sample_step(self.format_of(family).messages(self._turns), family)
        step = len(self._turns) - 1
        assessed = self.assess(
            sample,
            observation=observation,
            info=info,
            family=family,
            step=step,
            escalations_so_far=self._episode_escalations,
        )
        actions, scores, chosen, p_fail = (
            assessed.actions,
            assessed.scores,
            assessed.chosen,
            assessed.p_fail,
        )
        action, actor, cost = actions[chosen], "slm", CallCost()
        fallback, error = False, None
        if self.teacher is not None and p_fail > self.threshold:
            reply = self.teacher.act(
                self._turns, {**info, "family": family}, fallback_action=actions[chosen]
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
            verifier_scores=scores,
            chosen=chosen,
            features=assessed.features,
            p_fail=p_fail,
            threshold=self.threshold,
            actor=actor,
            action=action,
            cost=cost.as_dict(),
            teacher_fallback=fallback,
            teacher_error=error,
            slm_seconds=sample.seconds,
            router=type(self.router).__name__,
            router_note=self.router_note,
        )
        return action

    def with_router(
        self,
        router: Router,
        threshold: float | None = None,
        *,
        teacher: Teacher | None | _Keep = _KEEP,
        max_steps: int | None = None,
    ) -> RoutedAgent:
        """This agent routing with ``router`` at ``threshold`` (default: this agent's tau): a new
        agent sharing this one's policy, verifier and (unless ``teacher`` is given) teacher,
        with fresh statistics and episode state. Evaluation builds each method's actor this
        way from one loaded agent, so the SLM is loaded once per worker."""
        other = copy.copy(self)
        other.router = router
        other.threshold = self.threshold if threshold is None else float(threshold)
        if not 0.0 <= other.threshold <= 1.0:
            raise ConfigError(f"threshold must be in [0, 1], got {threshold!r}")
        if not isinstance(teacher, _Keep):
            other.teacher = teacher
        if max_steps is not None:
            other.max_steps = int(max_steps)
        other.stats = AgentStats()
        other.last_decision = None
        other._turns = []
        other._episode_escalations = 0
        other._episode_family = None
        return other

    # ------------------------------------------------------------------------------ save / load
    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``config.json``, the router (:mod:`r2v_agent.router.saving`: any savable
        router, with its weights file if it has one) and the SLM (unless it is a preset)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        router_spec = save_router(self.router, directory)
        verifier_spec: dict[str, Any] = {"type": "RuleVerifier"}
        if isinstance(self.verifier, LearnedVerifier):
            self.verifier.save(directory / "verifier.safetensors")
            verifier_spec = {**self.verifier.spec(), "path": "verifier.safetensors"}
        if self.policy_source in PRESETS and self.policy_source != "tiny-random":
            policy = {"preset": self.policy_source}
        else:  # weights may have been trained: save them
            source = getattr(self.policy, "source", None)
            if self.policy.base_model is not None:
                self.policy.base_model.save_pretrained(directory / "policy")
                self.policy.tokenizer.save_pretrained(directory / "policy")
            elif source is not None:  # a backend serving a saved folder: copy it as it is
                if Path(source).resolve() != (directory / "policy").resolve():
                    shutil.copytree(source, directory / "policy", dirs_exist_ok=True)
            else:
                raise ConfigError(
                    "this policy holds no weights to save: it dropped its full-precision copy "
                    "(keep_base=False), or a server holds them (openai backend); save the agent "
                    "from the transformers backend"
                )
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
                # which entropy the router's features use: refuses a backend that cannot
                "entropy": entropy_definition(getattr(self.policy, "entropy_top_k", None)),
            },
            "router": router_spec,
            "router_note": self.router_note,
            "verifier": verifier_spec,
            "history_chars": self.history_chars,
            "action_log": self.action_log,
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
        backend: str = "transformers",
        backend_options: dict[str, Any] | None = None,
    ) -> RoutedAgent:
        """A preset (``"tiny-random"``, ``"smollm2-135m"``: the entropy router standing in for an
        untrained one -- see :data:`PRESET_THRESHOLD`, a warning and ``last_decision.router_note``
        say so --, the rule verifier, :class:`OracleTeacher` unless ``teacher`` is given) or a
        saved agent directory (a malformed one raises :class:`ConfigError` naming the field).

        ``quantize="auto"`` runs SmolLM2 int8-quantised on CPU (see :class:`TransformersPolicy`)
        and in full precision elsewhere; ``None`` keeps full precision. ``device`` places the
        SLM (``"cuda"``, ``"auto"`` = a GPU when torch sees one; default: CPU). ``backend``
        picks the SLM engine (:data:`r2v_agent.policy.base.BACKENDS`): ``"llamacpp"`` serves
        the same weights from a BF16 GGUF written once beside them (CPU only); ``"vllm"`` loads
        the safetensors folder into vLLM; ``"openai"`` samples from a server
        (``backend_options={"url": ...}``, see :data:`r2v_agent.policy.build.BACKEND_OPTIONS`).
        A saved agent's router was trained on one entropy definition (its ``policy.entropy``);
        a backend that cannot compute it raises :class:`ConfigError`. Presets on a top-N-only
        backend use ``"top20"``."""
        name = str(name_or_path)
        device = resolve_device(device)
        on_cpu = device == "cpu"
        engine_loads = not needs_weights(backend)  # vllm / openai: the tokenizer is enough here
        if quantize == "auto" and engine_loads:
            quantize = None
        if name in PRESETS:
            if engine_loads:
                model, tokenizer = None, load_tokenizer(name)
            else:
                model, tokenizer = load_model_and_tokenizer(name, seed=seed)
            default = "int8" if name == "smollm2-135m" and on_cpu else None
            mode = default if quantize == "auto" else quantize
            # SmolLM2 is saved by name, so its full-precision weights need not stay in memory;
            # tiny-random (built in code) is saved by its weights.
            policy = build_policy(
                backend,
                model,
                tokenizer,
                source=source_dir(name),
                k=k or 5,
                seed=seed,
                quantize=mode,
                keep_base=name == "tiny-random",
                device=device,
                entropy_top_k=DEFAULT_TOP_K if backend in TOP_K_ONLY else None,
                backend_options=backend_options,
            )
            tau = PRESET_THRESHOLD if threshold is None else threshold
            note = _preset_router_note(tau)
            logger.warning("%s", note)
            return cls(
                policy,
                EntropyRouter(),
                teacher or OracleTeacher(),
                threshold=tau,
                family=family,
                policy_source=name,
                router_note=note,
            )
        directory = Path(name)
        config_path = directory / "config.json"
        if not config_path.is_file():
            raise ConfigError(
                f"{name!r} is neither a preset ({', '.join(PRESETS)}) nor a saved agent "
                "directory with config.json"
            )
        config = read_agent_config(config_path)
        spec = config["policy"]
        source = spec.get("preset") or str(directory / spec["path"])
        if "path" in spec and not (directory / spec["path"]).is_dir():
            raise ConfigError(f"{config_path}: policy.path {spec['path']!r}: no such folder")
        if engine_loads:
            model, tokenizer = None, load_tokenizer(source)
        else:
            model, tokenizer = load_model_and_tokenizer(source, seed=seed)
        saved_mode = spec.get("quantize") if on_cpu else None  # int8 is CPU-only
        mode = saved_mode if quantize == "auto" else quantize
        policy = build_policy(
            backend,
            model,
            tokenizer,
            source=source_dir(source),
            k=k or spec["k"],
            temperature=spec["temperature"],
            seed=seed,
            quantize=mode,
            keep_base=mode is None,
            device=device,
            entropy_top_k=parse_entropy_definition(spec["entropy"]),
            backend_options=backend_options,
        )
        verifier: LearnedVerifier | None = None
        if config["verifier"].get("type") == "LearnedVerifier":
            verifier_path = directory / config["verifier"]["path"]
            if not verifier_path.is_file():
                raise ConfigError(f"{config_path}: verifier.path: no such file {verifier_path}")
            try:
                verifier = LearnedVerifier.load(verifier_path)
            except Exception as exc:  # a torn or foreign weights file
                raise ConfigError(f"{verifier_path}: cannot load the verifier ({exc})") from exc
        return cls(
            policy,
            load_router(config["router"], directory),
            teacher if teacher is not None else _teacher_from_spec(config["teacher"], config_path),
            threshold=config["threshold"] if threshold is None else threshold,
            family=family or config["family"],
            max_steps=config["max_steps"],
            policy_source=spec.get("preset"),
            verifier=verifier,
            history_chars=config["history_chars"],
            action_log=config["action_log"],
            router_note=config["router_note"],
        )

    def decision_dict(self) -> dict[str, Any] | None:
        return asdict(self.last_decision) if self.last_decision else None


def read_agent_config(path: Path) -> dict[str, Any]:
    """Read and check a saved agent's ``config.json``; every problem is a :class:`ConfigError`
    naming the file and the field. Optional fields are filled with their defaults."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason})") from None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: the top level must be a JSON object")
    if config.get("format") != "r2v-agent" or config.get("version") != CONFIG_VERSION:
        raise ConfigError(f"{path} is not an r2v-agent config of version {CONFIG_VERSION}")
    if config.get("feature_names") != list(FEATURE_NAMES):
        raise ConfigError(f"{path}: feature_names: saved with other router features")

    def need(section: dict[str, Any], key: str, name: str, ok: Any, what: str) -> Any:
        value = section.get(key)
        if not ok(value):
            raise ConfigError(f"{path}: {name} must be {what}, got {value!r}")
        return value

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    def is_number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    policy = need(config, "policy", "policy", lambda v: isinstance(v, dict), "an object")
    if not isinstance(policy.get("preset"), str) and not isinstance(policy.get("path"), str):
        raise ConfigError(f"{path}: policy needs 'preset' (a name) or 'path' (a folder)")
    if isinstance(policy.get("preset"), str) and policy["preset"] not in PRESETS:
        raise ConfigError(f"{path}: policy.preset {policy['preset']!r} is not one of {PRESETS}")
    need(policy, "k", "policy.k", lambda v: is_int(v) and v >= 1, "an integer >= 1")
    need(policy, "temperature", "policy.temperature", lambda v: is_number(v) and v > 0, "> 0")
    need(policy, "quantize", "policy.quantize", lambda v: v is None or isinstance(v, str), "a str")
    policy.setdefault("entropy", "full")  # agents saved before the field: full-vocabulary

    def is_entropy(v: Any) -> bool:
        try:
            parse_entropy_definition(v)
        except ValueError:
            return False
        return True

    need(policy, "entropy", "policy.entropy", is_entropy, "'full' or 'topN'")
    need(config, "threshold", "threshold", lambda v: is_number(v) and 0 <= v <= 1, "in [0, 1]")
    config.setdefault("router", {"type": "MLPRouter"})
    need(config, "router", "router", lambda v: isinstance(v, dict), "an object")
    need(config["router"], "type", "router.type", lambda v: isinstance(v, str), "a name")
    config.setdefault("router_note", None)
    need(config, "router_note", "router_note", lambda v: v is None or isinstance(v, str), "a str")
    config.setdefault("verifier", {"type": "RuleVerifier"})
    verifier = need(config, "verifier", "verifier", lambda v: isinstance(v, dict), "an object")
    if verifier.get("type") == "LearnedVerifier":
        need(verifier, "path", "verifier.path", lambda v: isinstance(v, str), "a file name")
    config.setdefault("teacher", None)
    teacher = need(
        config, "teacher", "teacher", lambda v: v is None or isinstance(v, dict), "an object"
    )
    if teacher is not None:
        need(teacher, "type", "teacher.type", lambda v: isinstance(v, str), "a name")
    config.setdefault("family", None)
    need(config, "family", "family", lambda v: v is None or v in FORMATS, f"one of {list(FORMATS)}")
    config.setdefault("max_steps", 50)
    need(config, "max_steps", "max_steps", lambda v: is_int(v) and v >= 1, "an integer >= 1")
    config.setdefault("history_chars", None)
    need(
        config,
        "history_chars",
        "history_chars",
        lambda v: v is None or (is_int(v) and v > 0),
        "a positive integer or null",
    )
    config.setdefault("action_log", False)  # agents saved before the setting existed
    need(config, "action_log", "action_log", lambda v: isinstance(v, bool), "true or false")
    return config


def _teacher_from_spec(spec: dict[str, Any] | None, config_path: Path) -> Teacher | None:
    if spec is None:
        return None
    try:
        if spec["type"] == "OracleTeacher":
            return OracleTeacher(model=str(spec.get("model", "oracle")))
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
    except KeyError as exc:
        raise ConfigError(f"{config_path}: teacher.{exc.args[0]} is missing") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{config_path}: teacher: {exc}") from None
    raise ConfigError(f"{config_path}: teacher.type {spec['type']!r} is not a known teacher")
