"""Pipeline configuration: one dataclass per stage, every field documented, YAML validated.

``PipelineConfig.from_yaml(path)`` rejects an unknown field or a value of the wrong type with an
error that names it (``bc.lerning_rate: unknown field; known: ...``). Each stage's outputs are
keyed by :meth:`PipelineConfig.stage_hash`, a hash of that stage's settings and of every stage
it depends on, so a changed setting reruns exactly the stages it affects.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from r2v_agent.errors import ConfigError
from r2v_agent.router.features import resolve_features

__all__ = [
    "EnvConfig",
    "PolicyConfig",
    "CollectConfig",
    "BCConfig",
    "VerifierConfig",
    "DPOStageConfig",
    "RouterConfig",
    "ReportConfig",
    "PipelineConfig",
    "STAGES",
]


def _doc(text: str, default: Any = dataclasses.MISSING, factory: Any = dataclasses.MISSING) -> Any:
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata={"help": text})
    return field(default=default, metadata={"help": text})


@dataclass
class EnvConfig:
    id: str = _doc("Registered env id to train and evaluate on.", "R2V/TextWorld-v0")
    kwargs: dict[str, Any] = _doc(
        "Extra keyword arguments for gym.make (e.g. difficulty).", factory=dict
    )
    train_tasks: int = _doc("Training tasks: reset seeds 0..n-1 of the 'train' split.", 20)
    heldout_tasks: int = _doc(
        "Held-out tasks for evaluation: seeds 0..n-1 of the 'test' split.", 10
    )
    max_steps: int = _doc("Episode step limit.", 20)
    perturbation: str = _doc(
        "Perturbation stack spec (perturbations.make_stack).",
        "flaky_tool(p=0.2)+truncate(max_chars=400)",
    )
    perturbation_seeds: int = _doc("Perturbation seeds per task (paper: 5).", 5)


@dataclass
class PolicyConfig:
    base: str = _doc(
        "Base SLM: a preset ('tiny-random', 'smollm2-135m') or a model directory.", "smollm2-135m"
    )
    k: int = _doc("Candidates sampled per step.", 5)
    temperature: float = _doc("Sampling temperature.", 1.0)
    quantize: str | None = _doc("'int8' for CPU inference, or null for full precision.", None)
    history_chars: int = _doc("Character budget of the prompt's observation history.", 1200)
    action_log: bool = _doc(
        "Name the actions of the steps the history budget drops, in one line of the prompt "
        "(a stated prompt setting: the agent sees what it has done, not only the last steps).",
        False,
    )
    entropy_top_k: int | None = _doc(
        "Entropy features over the N most likely tokens (what top-N servers -- the vllm and "
        "openai backends -- can compute); null: over the whole vocabulary (transformers and "
        "llamacpp only). The trained agent records it and refuses a backend that cannot.",
        None,
    )


@dataclass
class CollectConfig:
    workers: int = _doc("Parallel processes playing tasks.", 2)


@dataclass
class BCConfig:
    epochs: int = _doc("Passes over the (context -> teacher action) examples.", 2)
    learning_rate: float = _doc("AdamW learning rate.", 5e-5)
    batch_size: int = _doc("Examples per optimiser step.", 8)
    lora: bool = _doc("Train LoRA adapters (peft) instead of all weights.", False)
    lora_rank: int = _doc("LoRA rank when lora is true.", 16)
    max_examples: int | None = _doc(
        "Cap on training examples (random subset); null keeps all.", None
    )
    max_tokens: int = _doc("Token cap of prompt + action (prompt cut from the left).", 384)
    train_layers: int | None = _doc(
        "Train only the top N decoder blocks (+ final norm); null trains every weight.", None
    )
    dagger_rounds: int = _doc(
        "DAgger rounds after BC: the policy plays the training games alone, the env's expert "
        "labels every state it reaches, and BC trains again on the pool of expert and relabelled "
        "examples (a max_examples sample of it when capped; 0: plain BC).",
        0,
    )
    dagger_tasks: int | None = _doc(
        "Training games a DAgger round plays (random subset, x the perturbation seeds); null: all.",
        None,
    )
    dagger_backend: str = _doc(
        "SLM backend that plays the DAgger rounds ('llamacpp' is the fastest on CPU).",
        "llamacpp",
    )


@dataclass
class VerifierConfig:
    encoder: str = _doc("Sentence encoder folder, or 'minilm' for the embedded MiniLM.", "minilm")
    states: int = _doc("Visited states at which the BC policy is sampled for labels.", 200)
    epochs: int = _doc("Training epochs of the head.", 200)
    learning_rate: float = _doc("Adam learning rate of the head.", 3e-3)
    heldout_fraction: float = _doc("Share of tasks held out to report AUROC/Brier/ECE.", 0.25)


@dataclass
class DPOStageConfig:
    """The ``dpo`` section (TRL's own settings class is ``ConsistencyDPOConfig`` in
    :mod:`r2v_agent.training.dpo`)."""

    states: int = _doc("Visited states at which K BC samples are ranked into pairs.", 150)
    margin: float = _doc("Minimum verifier-score gap between chosen and rejected.", 0.2)
    beta: float = _doc("DPO inverse temperature.", 0.1)
    mu: float = _doc("Weight of the Jensen-Shannon consistency term (clean vs perturbed).", 0.5)
    epochs: int = _doc("Passes over the pairs.", 1)
    learning_rate: float = _doc("Learning rate.", 5e-6)
    batch_size: int = _doc("Pairs per optimiser step.", 4)
    consistency_pairs: int = _doc(
        "Clean/perturbed state pairs for the JS term (and its report).", 64
    )


@dataclass
class RouterConfig:
    label: str = _doc(
        "Step label: 'progress' (no progress or led to failure = 1) or 'counterfactual' "
        "(the teacher acting here turns the failed episode into a success = 1).",
        "progress",
    )
    tasks: int | None = _doc(
        "Training tasks the fixed policy plays (x every seed); null: all.", None
    )
    fresh_tasks: bool = _doc(
        "Play training-split tasks the policy was not fine-tuned on (the indices after "
        "env.train_tasks), so the router learns the policy's failures on unseen tasks as in "
        "deployment; false: the fine-tuning tasks themselves, which a small policy may have "
        "memorised. Envs with a finite train split wrap around to its start.",
        True,
    )
    epochs: int = _doc("Full-batch training epochs.", 400)
    learning_rate: float = _doc("Adam learning rate.", 3e-3)
    hidden: int = _doc(
        "Width of the MLP's two hidden layers (a few hundred logged steps overfit a wide one).", 16
    )
    weight_decay: float = _doc("Adam weight decay (L2) of the MLP.", 1e-2)
    cvar_weight: float = _doc("lambda: weight of CVaR_alpha of per-seed Brier losses.", 0.5)
    cvar_alpha: float = _doc("alpha: share of worst perturbation seeds in the CVaR term.", 0.4)
    calibration: str = _doc("'temperature' or 'isotonic', fitted on held-out steps.", "isotonic")
    min_isotonic_steps: int = _doc(
        "Isotonic calibration needs this many calibration steps, both labels among them; with "
        "fewer it falls back to temperature scaling (one parameter; a step function fitted on a "
        "handful of steps maps every score to a constant and tau escalates nothing).",
        50,
    )
    target: str = _doc(
        "How tau is chosen: 'budget' (LLM-call share) or 'cvar' (failure bound).", "budget"
    )
    budget: float = _doc(
        "Most LLM-call share when target is 'budget': tau escalates the largest share of the "
        "calibration steps not above it (whole levels of near-equal p_fail at a time).",
        0.4,
    )
    cvar_bound: float = _doc(
        "Bound on CVaR_alpha of per-seed residual failure when target is 'cvar'.", 0.2
    )
    heldout_fraction: float = _doc("Share of tasks held out for calibration and tau.", 0.3)
    mixed_escalation_rate: float = _doc(
        "Mixed trajectories: besides the SLM-only rollouts, play the same tasks again with a "
        "seeded random router handing this share of steps to the (oracle) teacher, so the "
        "router also learns from states after escalations, which SLM-only rollouts never "
        "reach. 0: SLM-only. Steps the teacher acted on are not training examples (their label "
        "would judge the teacher's action, not the SLM's).",
        0.0,
    )
    label_workers: int = _doc(
        "Processes computing counterfactual labels, each with its own copy of the policy (one "
        "rollout per step of a failed episode: the router stage's slowest part). Every rollout "
        "reseeds the policy and the env, so the labels do not depend on the count (2 workers "
        "labelled 63 TerminalBench rollouts 1.27x faster than one process on 2 cores, start-up "
        "included: benchmarks/counterfactual_labels.py).",
        2,
    )
    feature_draws: int = _doc(
        "Draws of each logged SLM step's features the router is fitted on: 1, the draw the "
        "rollout recorded; N samples the state's K candidates N-1 more times (from its logged "
        "history, other seeds) and adds each draw that chose the logged action, with the "
        "step's label (a draw choosing another action has no label), so the router learns "
        "what holds across draws rather than one draw's noise. Costs one SLM step per extra "
        "draw and step.",
        1,
    )
    backend: str = _doc(
        "SLM backend the stage plays and labels its rollouts with: 'transformers' (int8 on CPU, "
        "as policy.quantize says) or 'llamacpp' (the BF16 GGUF that evaluations on CPU run). "
        "The router's sample features (entropy, likelihood, agreement, verifier scores) come "
        "from this backend, so fitting on the one it will run on removes a train/run shift "
        "(benchmarks/backend_feature_shift.py measures it).",
        "transformers",
    )
    features: list[str] | None = _doc(
        "Features the router reads, for ablations: feature or group names (entropy, "
        "likelihood, agreement, verifier, step_position, context), '-name' to drop one, e.g. "
        "['all', '-verifier']; null: all 15.",
        None,
    )


@dataclass
class ReportConfig:
    """The ``eval`` section: the report stage's held-out evaluation (``r2v eval``'s code path
    and seed rule, at a small scale; benchmarks run ``r2v eval`` itself)."""

    episodes: int | None = _doc("Held-out tasks per policy (null: every held-out task).", None)
    perturbed: bool = _doc("Evaluate under the perturbation stack.", True)
    seeds: int = _doc(
        "Perturbation seeds per task: 100, 101, ... (r2v eval's rule: never a training seed).", 1
    )


@dataclass
class PipelineConfig:
    name: str = _doc("Run name (used in the report).", "r2v")
    seed: int = _doc("Seed of every random choice in the pipeline.", 0)
    output_dir: str = _doc(
        "Where stage outputs go (relative to the config file's folder).", "runs/r2v"
    )
    report_path: str | None = _doc(
        "Also copy the Markdown report here (relative to the config).", None
    )
    env: EnvConfig = _doc("The environment and perturbations.", factory=EnvConfig)
    policy: PolicyConfig = _doc("The SLM policy.", factory=PolicyConfig)
    collect: CollectConfig = _doc("Teacher trajectory collection.", factory=CollectConfig)
    bc: BCConfig = _doc("Behavioural cloning.", factory=BCConfig)
    verifier: VerifierConfig = _doc("Verifier training.", factory=VerifierConfig)
    dpo: DPOStageConfig = _doc("Verifier-guided DPO with consistency.", factory=DPOStageConfig)
    router: RouterConfig = _doc("Router training, calibration and tau.", factory=RouterConfig)
    eval: ReportConfig = _doc("Held-out evaluation for the report.", factory=ReportConfig)
    base_dir: str = field(default=".", metadata={"help": "(set by from_yaml) the config's folder"})

    # ---------------------------------------------------------------------- loading
    @classmethod
    def from_dict(cls, data: dict[str, Any], base_dir: str | Path = ".") -> PipelineConfig:
        config = _build(cls, data, "")
        config.base_dir = str(Path(base_dir).resolve())
        config.validate()
        return config

    @classmethod
    def from_yaml(cls, path: str | Path) -> PipelineConfig:
        import yaml

        path = Path(path)
        if not path.is_file():
            what = "is a folder, not a config file" if path.is_dir() else "does not exist"
            raise ConfigError(f"config {str(path)!r} {what}")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text ({exc.reason})") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        try:
            return cls.from_dict(data, base_dir=path.parent)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    def validate(self) -> None:
        def need(ok: bool, name: str, value: Any, why: str) -> None:
            if not ok:
                raise ConfigError(f"{name}: {why}, got {value!r}")

        need(self.env.train_tasks >= 2, "env.train_tasks", self.env.train_tasks, "need at least 2")
        need(
            self.env.heldout_tasks >= 1,
            "env.heldout_tasks",
            self.env.heldout_tasks,
            "need at least 1",
        )
        need(self.env.max_steps >= 1, "env.max_steps", self.env.max_steps, "must be >= 1")
        need(
            self.env.perturbation_seeds >= 1,
            "env.perturbation_seeds",
            self.env.perturbation_seeds,
            "must be >= 1",
        )
        need(self.policy.k >= 2, "policy.k", self.policy.k, "need at least 2 candidates")
        need(
            self.policy.entropy_top_k is None
            or (isinstance(self.policy.entropy_top_k, int) and self.policy.entropy_top_k >= 1),
            "policy.entropy_top_k",
            self.policy.entropy_top_k,
            "must be null or an integer >= 1",
        )
        need(
            self.policy.quantize in (None, "int8"),
            "policy.quantize",
            self.policy.quantize,
            "must be null or 'int8'",
        )
        need(self.bc.dagger_rounds >= 0, "bc.dagger_rounds", self.bc.dagger_rounds, "must be >= 0")
        need(
            self.bc.dagger_tasks is None or self.bc.dagger_tasks >= 1,
            "bc.dagger_tasks",
            self.bc.dagger_tasks,
            "must be null or >= 1",
        )
        need(
            self.bc.dagger_backend in ("transformers", "llamacpp"),
            "bc.dagger_backend",
            self.bc.dagger_backend,
            "must be 'transformers' or 'llamacpp' (the backends built from the weights in hand)",
        )
        need(
            0.0 <= self.router.mixed_escalation_rate < 1.0,
            "router.mixed_escalation_rate",
            self.router.mixed_escalation_rate,
            "must be in [0, 1)",
        )
        try:
            resolve_features(self.router.features)
        except ValueError as exc:
            raise ConfigError(f"router.features: {exc}") from None
        need(
            self.router.label_workers >= 1,
            "router.label_workers",
            self.router.label_workers,
            "must be at least 1",
        )
        need(
            self.router.feature_draws >= 1,
            "router.feature_draws",
            self.router.feature_draws,
            "must be at least 1 (the recorded draw)",
        )
        need(
            self.router.backend in ("transformers", "llamacpp"),
            "router.backend",
            self.router.backend,
            "must be 'transformers' or 'llamacpp' (the backends built from the weights in hand)",
        )
        need(
            self.router.label in ("progress", "counterfactual"),
            "router.label",
            self.router.label,
            "must be 'progress' or 'counterfactual'",
        )
        need(
            self.router.calibration in ("temperature", "isotonic"),
            "router.calibration",
            self.router.calibration,
            "must be 'temperature' or 'isotonic'",
        )
        need(
            self.router.target in ("budget", "cvar"),
            "router.target",
            self.router.target,
            "must be 'budget' or 'cvar'",
        )
        need(
            0.0 < self.router.cvar_alpha <= 1.0,
            "router.cvar_alpha",
            self.router.cvar_alpha,
            "must be in (0, 1]",
        )
        need(
            self.router.cvar_weight >= 0.0,
            "router.cvar_weight",
            self.router.cvar_weight,
            "must be >= 0",
        )
        need(
            0.0 <= self.router.budget <= 1.0,
            "router.budget",
            self.router.budget,
            "must be in [0, 1]",
        )
        need(
            self.router.min_isotonic_steps >= 2,
            "router.min_isotonic_steps",
            self.router.min_isotonic_steps,
            "must be >= 2",
        )
        for name, frac in (
            ("verifier.heldout_fraction", self.verifier.heldout_fraction),
            ("router.heldout_fraction", self.router.heldout_fraction),
        ):
            need(0.0 < frac < 1.0, name, frac, "must be in (0, 1)")
        need(self.dpo.mu >= 0.0, "dpo.mu", self.dpo.mu, "must be >= 0")
        need(self.bc.epochs >= 1, "bc.epochs", self.bc.epochs, "must be >= 1")
        import perturbations

        try:
            perturbations.parse_spec(self.env.perturbation)
        except Exception as exc:
            raise ConfigError(f"env.perturbation: {exc}") from None

    # ---------------------------------------------------------------------- paths and hashes
    def resolve(self, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() else (Path(self.base_dir) / p).resolve()

    @property
    def run_dir(self) -> Path:
        return self.resolve(self.output_dir)

    @property
    def agent_dir(self) -> Path:
        """Where the router stage saves the trained agent (``RoutedAgent.from_pretrained``)."""
        return self.run_dir / "router" / "agent"

    def section(self, name: str) -> dict[str, Any]:
        return dataclasses.asdict(getattr(self, name))

    def _hashed_section(self, name: str) -> dict[str, Any]:
        # Fields added after runs were committed count only when set, so those runs keep
        # their stage hashes (and stay resumable) while the field is at its old behaviour.
        section = self.section(name)
        for key in _NOT_HASHED.get(name, ()):
            section.pop(key)
        for key, old in _HASHED_ONLY_WHEN_SET.get(name, {}).items():
            if section.get(key) == old:
                section.pop(key)
        return section

    def stage_hash(self, stage: str) -> str:
        """Hash of everything that decides this stage's outputs (its section and upstream)."""
        parts: dict[str, Any] = {
            "seed": self.seed,
            "env": self._hashed_section("env"),
            "policy": self._hashed_section("policy"),
        }
        for name in STAGES[: STAGES.index(stage) + 1]:
            key = _SECTION_OF[name]
            if key:
                parts[key] = self._hashed_section(key)
        blob = json.dumps(parts, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("base_dir")
        return data


#: Stage order; each depends on the ones before it.
STAGES: tuple[str, ...] = ("collect", "bc", "verifier", "dpo", "router", "report")
#: section -> {field: its value that does what the code did before the field existed}.
_HASHED_ONLY_WHEN_SET: dict[str, dict[str, Any]] = {
    "policy": {"entropy_top_k": None, "action_log": False},
    "router": {
        "fresh_tasks": False,
        "mixed_escalation_rate": 0.0,
        "features": None,
        "backend": "transformers",
        "feature_draws": 1,
    },
    "bc": {"dagger_rounds": 0, "dagger_tasks": None, "dagger_backend": "llamacpp"},
}
#: section -> fields that decide how fast a stage runs, never what it writes.
_NOT_HASHED: dict[str, tuple[str, ...]] = {"router": ("label_workers",)}
_SECTION_OF = {
    "collect": "collect",
    "bc": "bc",
    "verifier": "verifier",
    "dpo": "dpo",
    "router": "router",
    "report": "eval",
}


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if f.name != "base_dir"}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if key not in known:
            raise ConfigError(f"{name}: unknown field; known: {', '.join(sorted(known))}")
        hint = hints[key]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value, f"{name}.")
        else:
            kwargs[key] = _coerce(hint, value, name)
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, name: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(option, value, name)
            except ConfigError:
                continue
        raise ConfigError(f"{name}: expected {_hint_name(hint)}, got {value!r}")
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{name}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected a string, got {value!r}")
        return value
    return value


def _hint_name(hint: Any) -> str:
    return " | ".join(getattr(a, "__name__", str(a)) for a in typing.get_args(hint))
