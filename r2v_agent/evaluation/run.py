"""Resumable evaluation sweeps: methods x tasks x perturbation seeds, one JSONL record per episode.

    python benchmarks/run.py --config benchmarks/configs/textworld-cpu.yaml \\
        --methods slm,llm,r2v,random@match,ppo,oracle --sweep entropy,verifier,r2v \\
        --points 0.1,0.3,0.5,0.7,0.9 --out benchmarks/results/textworld-cpu/episodes.jsonl

Each episode has a key ``method/seed/task``. Records are appended atomically by the parent as
episodes finish (:class:`~r2v_agent.trajectories.TrajectoryWriter`), and a restarted run
skips every key already in the file: a run killed at any moment, even with SIGKILL, continues
with no lost and no duplicated episode (an episode in flight is simply played again).

Episodes run in a local process pool (``--workers``), or as Ray tasks (``--executor ray``,
``--ray-address`` to join a cluster; without one a local Ray instance is started). Each worker
loads the agent once and reuses it for every method.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from r2v_agent.errors import ConfigError, WorkerError
from r2v_agent.evaluation.methods import MethodSpec, build_actor, parse_method
from r2v_agent.policy.base import BACKENDS
from r2v_agent.trajectories import TrajectoryWriter, episode_keys, read_episodes
from r2v_agent.workers import map_unordered

__all__ = [
    "EvalSettings",
    "Job",
    "plan_jobs",
    "run_eval",
    "thresholds_for_shares",
    "add_arguments",
    "relative_to_results",
    "run_from_args",
    "main",
]

logger = logging.getLogger(__name__)


@dataclass
class EvalSettings:
    agent_dir: str
    env_id: str
    out: str
    methods: list[str]
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    split: str | None = "test"
    tasks: list[int] = field(default_factory=lambda: list(range(10)))
    perturbation: str | None = None
    perturbation_seeds: list[int | None] = field(default_factory=lambda: [None])
    max_steps: int = 20
    seed: int = 0
    workers: int = 1
    executor: str = "process"
    ray_address: str | None = None
    ppo_path: str | None = None
    ppo_rollouts: str | None = None
    ppo_cost: float = 0.3
    ppo_timesteps: int = 20_000
    device: str | None = None  # where the SLM runs (resolve_device); None = CPU
    backend: str = "transformers"  # the SLM engine (r2v_agent.policy.base.BACKENDS)
    slm_url: str | None = None  # the openai backend's server: every worker is its client
    sample_cache: str | None = None  # SQLite file of SLM samples shared across methods
    #: CPU threads per worker (default: the machine's cores / workers). Lower it when other
    #: engines share the machine: a llama.cpp engine with more threads than it gets cores
    #: stalls at its barriers (measured 10x slower beside another run on 2 cores).
    threads: int | None = None


#: Evaluation perturbation seeds are 100, 101, ...: never one of the training seeds 1..N.
EVAL_SEED_BASE = 100


def evaluation_seeds(n: int, *, perturbed: bool = True) -> list[int | None]:
    """The perturbation seeds of an evaluation with ``n`` seeds per task (``[None]``: clean)."""
    return [EVAL_SEED_BASE + i for i in range(n)] if perturbed else [None]


@dataclass(frozen=True)
class Job:
    method: str
    task: int
    perturbation_seed: int | None

    @property
    def key(self) -> str:
        return f"{self.method}/{self.perturbation_seed}/{self.task}"


def plan_jobs(settings: EvalSettings) -> list[Job]:
    methods = [str(parse_method(m)) for m in settings.methods]
    if len(set(methods)) != len(methods):
        raise ConfigError(f"methods repeat: {methods}")
    return [
        Job(m, t, z) for m in methods for z in settings.perturbation_seeds for t in settings.tasks
    ]


# ---------------------------------------------------------------------------- worker side
_CACHE: dict[str, Any] = {}


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _load_agent(
    agent_dir: str,
    seed: int,
    device: str | None = None,
    backend: str = "transformers",
    slm_url: str | None = None,
    sample_cache: str | None = None,
) -> Any:
    key = f"agent:{agent_dir}:{device}:{backend}:{slm_url}:{sample_cache}"
    if key not in _CACHE:
        from r2v_agent.agent import RoutedAgent

        options = {"url": slm_url} if backend == "openai" else None
        agent = RoutedAgent.from_pretrained(
            agent_dir, seed=seed, device=device, backend=backend, backend_options=options
        )
        if sample_cache:
            from r2v_agent.policy.cache import CachedPolicy, SampleCache

            agent.policy = CachedPolicy(agent.policy, SampleCache(sample_cache))
        _CACHE[key] = agent
    return _CACHE[key]


def _env(settings: EvalSettings, z: int | None) -> Any:
    from r2v_agent.rollout import make_env

    key = f"env:{settings.env_id}:{json.dumps(settings.env_kwargs, sort_keys=True)}:{z}"
    if key not in _CACHE:
        _CACHE[key] = make_env(
            settings.env_id,
            kwargs=settings.env_kwargs,
            split=settings.split,
            max_steps=settings.max_steps,
            perturbation=settings.perturbation if z is not None else None,
            perturbation_seed=z,
        )
    return _CACHE[key]


def run_job(job: Job, settings: EvalSettings, random_rate: float | None = None) -> dict[str, Any]:
    """Play one episode (in a worker) and return its record."""

    spec = parse_method(job.method)
    agent = (
        _load_agent(
            settings.agent_dir,
            settings.seed,
            settings.device,
            settings.backend,
            settings.slm_url,
            settings.sample_cache,
        )
        if spec.name != "llm"
        else None
    )
    actor = build_actor(
        spec,
        agent,
        env_id=settings.env_id,
        env_kwargs=settings.env_kwargs,
        split=settings.split,
        max_steps=settings.max_steps,
        seed=actor_seed(settings.seed, job),
        ppo_path=Path(settings.ppo_path) if settings.ppo_path else None,
        random_rate=random_rate,
    )
    return play_job(
        job,
        actor,
        settings,
        extra={
            "method": spec.name,
            "point": spec.point if not spec.match else random_rate,
            "threshold": getattr(actor, "threshold", None),
            # Relative to the results file: committed records carry no machine's paths.
            "agent_dir": relative_to_results(settings.agent_dir, settings.out),
            "split": settings.split,
            "env_kwargs": settings.env_kwargs,
        },
    )


def actor_seed(seed: int, job: Job) -> int:
    """The seed of a job's own randomness (the random router's draws): one stream per
    (run seed, task, perturbation seed), so the perturbed replays of a task do not share draws."""
    z = 0 if job.perturbation_seed is None else job.perturbation_seed + 1
    return int(np.random.SeedSequence([seed, job.task, z]).generate_state(1)[0])


def play_job(
    job: Job, actor: Any, settings: EvalSettings, *, extra: dict[str, Any]
) -> dict[str, Any]:
    """One evaluation episode of ``actor`` (the record ``r2v eval`` writes; the pipeline's
    report plays its policies through here too)."""
    from r2v_agent.rollout import play_episode

    return play_episode(
        _env(settings, job.perturbation_seed),
        actor,
        env_id=settings.env_id,
        env_seed=job.task,
        agent_name=job.method,
        episode_key=job.key,
        perturbation=settings.perturbation if job.perturbation_seed is not None else None,
        perturbation_seed=job.perturbation_seed,
        actor_seed=job.task,
        extra=extra,
    )


def _run_job_tuple(args: tuple[Job, EvalSettings, float | None]) -> dict[str, Any]:
    return run_job(*args)


# ---------------------------------------------------------------------------- executors
def _process_pool(
    jobs: list[Job], settings: EvalSettings, rate: float | None
) -> Iterator[dict[str, Any]]:
    threads = settings.threads or max(1, (os.cpu_count() or 1) // max(1, settings.workers))
    if settings.workers <= 1:
        _worker_init(threads)
        for job in jobs:
            yield run_job(job, settings, rate)
        return
    yield from map_unordered(
        _run_job_tuple,
        ((j, settings, rate) for j in jobs),
        settings.workers,
        initializer=_worker_init,
        initargs=(threads,),
    )


def _ray(jobs: list[Job], settings: EvalSettings, rate: float | None) -> Iterator[dict[str, Any]]:
    import ray

    started = False
    if not ray.is_initialized():
        ray.init(
            address=settings.ray_address,
            num_cpus=None if settings.ray_address else settings.workers,
            include_dashboard=False,
            log_to_driver=False,
        )
        started = True
    try:
        # Ray hides GPUs from tasks that do not ask for one; a 135M SLM takes well under a
        # quarter of a card, so four episodes share one.
        on_gpu = (settings.device or "cpu").startswith("cuda")
        remote = ray.remote(num_cpus=1, num_gpus=0.25 if on_gpu else 0)(run_job)
        pending = [remote.remote(job, settings, rate) for job in jobs]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])
    finally:
        if started:
            ray.shutdown()


def _execute(
    jobs: list[Job], settings: EvalSettings, rate: float | None
) -> Iterable[dict[str, Any]]:
    if settings.executor == "process":
        return _process_pool(jobs, settings, rate)
    if settings.executor == "ray":
        return _ray(jobs, settings, rate)
    raise ConfigError(f"executor must be 'process' or 'ray', got {settings.executor!r}")


def _r2v_share(path: Path) -> float | None:
    steps = escalations = 0
    if not path.exists():
        return None
    for record in read_episodes(path):
        if record["agent"] == "r2v":
            steps += len(record["steps"])
            escalations += record["escalations"]
    return escalations / steps if steps else None


def _ensure_ppo(settings: EvalSettings) -> None:
    if not any(parse_method(m).name == "ppo" for m in settings.methods):
        return
    out = Path(settings.out)
    if settings.ppo_path is None:
        settings.ppo_path = str(out.with_name(out.stem + ".ppo_router.zip"))
    if Path(settings.ppo_path).exists():
        return
    rollouts = settings.ppo_rollouts or str(Path(settings.agent_dir).parent / "rollouts.jsonl")
    if not Path(rollouts).exists():
        raise ConfigError(
            f"ppo: no logged SLM rollouts at {rollouts} (the router stage writes them)"
        )
    from r2v_agent.evaluation.ppo import train_ppo_router

    print(
        f"training the PPO router on {rollouts} ({settings.ppo_timesteps} steps, cost {settings.ppo_cost})"
    )
    router = train_ppo_router(
        rollouts, cost=settings.ppo_cost, timesteps=settings.ppo_timesteps, seed=settings.seed
    )
    router.save(settings.ppo_path)


def run_eval(settings: EvalSettings) -> Path:
    """Play every planned episode not yet in ``settings.out``; return the results path."""
    out = Path(settings.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    jobs = plan_jobs(settings)
    _ensure_ppo(settings)
    done = episode_keys(out)
    todo = [j for j in jobs if j.key not in done]
    matched = [j for j in todo if parse_method(j.method).match]
    first = [j for j in todo if not parse_method(j.method).match]
    print(
        f"{len(jobs)} episodes planned, {len(jobs) - len(todo)} already in {out}, {len(todo)} to run"
    )
    with TrajectoryWriter(out) as writer, tqdm(total=len(todo), desc="eval", unit="episode") as bar:
        for phase, rate in ((first, None), (matched, "r2v")):
            if not phase:
                continue
            share = _r2v_share(out) if rate else None
            if rate and share is None:
                raise ConfigError("random@match needs r2v episodes in the same results file")
            for record in _execute(phase, settings, share):
                writer.write(record)
                bar.update(1)
                bar.set_postfix(last=record["episode_key"])
    return out


def thresholds_for_shares(
    name: str, shares: list[float], rollouts: str | Path, agent_dir: str | Path
) -> list[float]:
    """Thresholds at which router ``name`` escalates each share of the logged SLM steps.

    ``rollouts`` is the router stage's log of the SLM playing training games alone, so the
    thresholds are picked without looking at the test games. (The share on test episodes can
    differ: routing changes the states that follow.)
    """
    import numpy as np

    from r2v_agent.router.baselines import EntropyRouter, VerifierRouter
    from r2v_agent.router.features import FEATURE_NAMES
    from r2v_agent.router.thresholds import threshold_for_share

    if name not in ("entropy", "verifier", "r2v"):
        raise ConfigError(f"--shares works for entropy, verifier and r2v, not {name!r}")
    rows = [
        [step["features"][f] for f in FEATURE_NAMES]
        for record in read_episodes(rollouts)
        if record["agent"] == "slm"  # not the mixed rollouts (router.mixed_escalation_rate)
        for step in record["steps"]
        if step.get("features")
    ]
    if not rows:
        raise ConfigError(f"--shares: no logged steps with features in {rollouts}")
    features = np.asarray(rows, dtype=np.float32)
    if name == "entropy":
        scores = EntropyRouter().p_fail(features)
    elif name == "verifier":
        scores = VerifierRouter().p_fail(features)
    else:
        scores = _saved_router(agent_dir).p_fail(features)
    # Each tau lies between levels of near-equal scores and has at most 6 decimals, the
    # precision of a sweep point's name (r2v@0.017849), so the name is the threshold it runs.
    return sorted({threshold_for_share(scores, s, decimals=6) for s in shares})


def relative_to_results(path: str | Path, results_file: str | Path) -> str:
    """``path`` relative to the folder of ``results_file`` (``"../../runs/x/agent"``), so the
    records and settings of a run can be committed and moved without a machine's paths. A name
    that is no path here (a preset such as ``smollm2-135m``) is kept as it is."""
    if not Path(path).exists():
        return str(path)
    return os.path.relpath(Path(path).resolve(), Path(results_file).resolve().parent)


def _saved_router(agent_dir: str | Path) -> Any:
    """The router a saved agent directory holds (whatever its type)."""
    from r2v_agent.agent import read_agent_config
    from r2v_agent.router.saving import load_router

    directory = Path(agent_dir)
    return load_router(read_agent_config(directory / "config.json")["router"], directory)


# ---------------------------------------------------------------------------- command line
def _cache_counters(path: str | None) -> dict[str, int]:
    if not path:
        return {"hits": 0, "calls": 0}
    from r2v_agent.policy.cache import SampleCache

    cache = SampleCache(path)
    try:
        return cache.counters()
    finally:
        cache.close()


def _parse_seeds(text: str) -> list[int | None]:
    return [None if s in ("none", "clean") else int(s) for s in text.split(",") if s]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The evaluation runner's options (``r2v eval`` and ``benchmarks/run.py`` share them)."""
    parser.add_argument(
        "--config", help="a pipeline config: env, perturbation, seeds and agent come from it"
    )
    parser.add_argument(
        "--agent", help="a saved agent directory (default: the config's trained agent)"
    )
    parser.add_argument("--env", help="env id (default: the config's)")
    parser.add_argument("--env-kwargs", default=None, help="JSON of gym.make kwargs")
    parser.add_argument("--split", default="test")
    parser.add_argument("--methods", default="slm,llm,r2v", help="comma-separated method specs")
    parser.add_argument(
        "--sweep", default="", help="methods to sweep over --points (entropy,verifier,r2v)"
    )
    parser.add_argument("--points", default="0.1,0.3,0.5,0.7,0.9")
    parser.add_argument(
        "--shares",
        default=None,
        help="instead of --points: thresholds at which each swept router escalates these "
        "shares of the router stage's logged SLM steps (training games), e.g. 0.2,0.4,0.6",
    )
    parser.add_argument("--tasks", type=int, default=None, help="held-out tasks 0..N-1")
    parser.add_argument(
        "--seeds", default=None, help="perturbation seeds, e.g. 100,101 ('none' = clean)"
    )
    parser.add_argument("--perturbation", default=None)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--out", required=True)
    parser.add_argument(
        "--workers", type=int, default=None, help="episode processes (default 2; vllm: 1)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads per worker (default: cores / workers; lower it beside other runs)",
    )
    parser.add_argument("--executor", choices=["process", "ray"], default="process")
    parser.add_argument("--ray-address", default=None)
    parser.add_argument("--ppo-cost", type=float, default=0.3)
    parser.add_argument("--ppo-timesteps", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--device",
        default=None,
        help="where the SLM runs: cpu (default), cuda, cuda:N, or auto (a GPU when torch sees one)",
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="transformers",
        help="the SLM engine: transformers (CPU/GPU); llamacpp (CPU; a BF16 GGUF of the same "
        "weights, written once beside them); vllm (vLLM in each worker process: use --workers "
        "1); openai (a server at --slm-url, e.g. vLLM's, shared by every worker)",
    )
    parser.add_argument(
        "--sample-cache",
        default=None,
        help="SQLite file caching SLM samples across the run's methods (same prompt, seed and "
        "settings: the same candidates; records are identical with and without it)",
    )
    parser.add_argument(
        "--slm-url",
        default=None,
        help="the openai backend's OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1",
    )


def _record_settings(path: Path, recorded: dict[str, Any]) -> None:
    """Write this invocation's settings beside the results, keeping the earlier invocations'
    under ``invocations`` (a results file grows over several runs: methods, seeds, sweeps)."""
    earlier: list[dict[str, Any]] = []
    if path.is_file():
        try:
            previous = json.loads(path.read_text())
        except ValueError:
            previous = {}
        if isinstance(previous, dict):
            earlier = previous.pop("invocations", None) or ([previous] if previous else [])
    path.write_text(json.dumps({**recorded, "invocations": [*earlier, recorded]}, indent=2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="r2v eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv), parser)


def run_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run the evaluation the parsed options describe; returns the exit code."""
    device = None
    if args.device is not None:
        from r2v_agent.policy.models import resolve_device

        try:  # a bad name fails here, not in every worker; "auto" is decided once, here
            device = resolve_device(args.device)
        except ConfigError as exc:
            print(f"r2v eval: error: {exc}")
            return 2

    if (args.backend == "openai") != bool(args.slm_url):
        print("r2v eval: error: --slm-url goes with --backend openai, and it needs one")
        return 2
    if args.workers is None:
        args.workers = 1 if args.backend == "vllm" else 2
    if args.threads is not None and args.threads < 1:
        print(f"r2v eval: error: --threads must be at least 1, got {args.threads}")
        return 2
    if args.backend == "vllm" and args.workers > 1 and args.executor == "process":
        print(
            "r2v eval: error: --backend vllm starts one engine per worker process; use "
            "--workers 1, or serve the model (vLLM's OpenAI server) and run --backend openai "
            "--slm-url URL, whose workers share that one engine"
        )
        return 2
    env_id, kwargs, agent, perturbation, max_steps, n_seeds, tasks = None, {}, None, None, 20, 1, 10
    rollouts: Path | None = None  # the router stage's logged SLM steps (for --shares)
    if args.config:
        from r2v_agent.config import PipelineConfig

        cfg = PipelineConfig.from_yaml(args.config)
        env_id, kwargs, agent = cfg.env.id, cfg.env.kwargs, str(cfg.agent_dir)
        rollouts = cfg.run_dir / "router" / "rollouts.jsonl"
        perturbation, max_steps = cfg.env.perturbation, cfg.env.max_steps
        n_seeds, tasks = cfg.env.perturbation_seeds, cfg.env.heldout_tasks
    env_id = args.env or env_id
    agent = args.agent or agent
    if not env_id or not agent:
        parser.error("give --config, or --env and --agent")
    if args.env_kwargs:
        kwargs = json.loads(args.env_kwargs)
    perturbation = args.perturbation if args.perturbation is not None else perturbation
    seeds: list[int | None] = (
        _parse_seeds(args.seeds)
        if args.seeds
        else evaluation_seeds(n_seeds, perturbed=bool(perturbation))
    )
    methods = [m for m in args.methods.split(",") if m]
    points = [float(p) for p in args.points.split(",") if p]
    for name in [s for s in args.sweep.split(",") if s]:
        if args.shares:
            shares = [float(x) for x in args.shares.split(",") if x]
            # the run's own router stage, also for another agent of that run (--agent): a
            # variant's thresholds are read off the same training-game steps
            rollouts = rollouts or Path(agent).parent / "rollouts.jsonl"
            try:
                points = thresholds_for_shares(name, shares, rollouts, agent)
            except (ConfigError, FileNotFoundError) as exc:
                print(f"r2v eval: error: {exc}")
                return 2
            print(f"{name}: thresholds {points} for shares {shares} of {rollouts}")
        methods += [str(MethodSpec(name, p)) for p in points]
    settings = EvalSettings(
        agent_dir=agent,
        env_id=env_id,
        env_kwargs=kwargs,
        out=args.out,
        methods=list(dict.fromkeys(methods)),
        split=args.split if args.split != "none" else None,
        tasks=list(range(args.tasks if args.tasks is not None else tasks)),
        perturbation=perturbation or None,
        perturbation_seeds=seeds,
        max_steps=args.max_steps or max_steps,
        seed=args.seed,
        workers=args.workers,
        threads=args.threads,
        executor=args.executor,
        ray_address=args.ray_address,
        ppo_cost=args.ppo_cost,
        ppo_timesteps=args.ppo_timesteps,
        device=device,
        backend=args.backend,
        slm_url=args.slm_url,
        sample_cache=args.sample_cache,
    )
    logging.basicConfig(level=logging.WARNING)
    before = _cache_counters(settings.sample_cache)
    try:
        path = run_eval(settings)
    except ConfigError as exc:
        print(f"r2v eval: error: {exc}")
        return 2
    except WorkerError as exc:  # the episodes finished before it are in the results file
        print(f"r2v eval: error: {exc}")
        return 1
    if settings.sample_cache:
        after = _cache_counters(settings.sample_cache)
        hits, calls = after["hits"] - before["hits"], after["calls"] - before["calls"]
        print(
            f"sample cache {settings.sample_cache}: {hits} of {calls} SLM samples served from "
            f"the cache ({100 * hits / max(1, calls):.1f} % of the SLM's work saved)"
        )
    recorded = asdict(settings)
    for key in ("agent_dir", "out", "ppo_path", "ppo_rollouts"):
        if recorded[key] is not None:
            recorded[key] = relative_to_results(recorded[key], path)
    _record_settings(Path(path).with_suffix(".settings.json"), recorded)
    print(f"results: {path}")
    return 0
