"""Do the router's features move between the backend it was fitted on and the one it runs on?

    python benchmarks/backend_feature_shift.py --config C [--backend llamacpp] [--episodes N] \
        [--out R/backend_shift.md]

The router stage plays and labels its rollouts on ``router.backend`` (by default the transformers
policy, int8 on CPU); evaluations on CPU run the same weights on llama.cpp (a BF16 GGUF). The
router and its tau were fitted on the stage backend's features. This replays every SLM-acted
step of the stage's logged rollouts (``runs/<name>/router``) from its recorded history and
samples that state again, in one run and side by side:

- ``stage``: the features the stage recorded (what the router was fitted on: optimistic);
- ``resampled``: the stage's backend again, another sampling seed (the sampling-noise floor);
- ``<backend>``: the evaluation backend, the same seed as ``resampled``.

For each source it prints each feature's mean and its rank correlation with the recorded one,
the router's p_fail, the share of steps over the stage's tau, and the step AUROC against the
stage's counterfactual labels (router and entropy alone). The position features (step, tool
error, observation length, escalations so far) do not depend on sampling: the script checks
that the replay reproduces them, so the states are the ones the stage saw.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from r2v_agent import metrics
from r2v_agent.agent import RoutedAgent
from r2v_agent.config import PipelineConfig
from r2v_agent.groundtruth import LABELS_FILE, load_step_labels
from r2v_agent.router.features import FEATURE_NAMES
from r2v_agent.training import components
from r2v_agent.training.feature_draws import redraw_features
from r2v_agent.trajectories import read_episodes

#: Features computed from the state alone, not from the sampled candidates.
STATE_FEATURES = ("step_frac", "tool_error", "obs_log_len", "escalation_share")


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation (average ranks for ties); nan when either side is constant."""

    def ranks(x: np.ndarray) -> np.ndarray:
        order = np.argsort(x, kind="stable")
        r = np.empty(len(x))
        r[order] = np.arange(len(x), dtype=float)
        for value in np.unique(x):  # ties share their mean rank
            tied = x == value
            r[tied] = r[tied].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="a pipeline config whose router ran")
    parser.add_argument("--backend", default="llamacpp", help="the evaluation backend")
    parser.add_argument("--episodes", type=int, default=None, help="first N rollouts only")
    parser.add_argument("--seed", type=int, default=1, help="the replays' sampling seed")
    parser.add_argument("--out", type=Path, default=None, help="write the table here (.md)")
    args = parser.parse_args()

    config = PipelineConfig.from_yaml(args.config)
    stage = config.run_dir / "router"
    episodes = list(read_episodes(stage / "rollouts.jsonl"))[: args.episodes]
    _, saved = load_step_labels(stage / LABELS_FILE)
    slm = [(e, t) for e in episodes for t, s in enumerate(e["steps"]) if s["actor"] != "teacher"]
    y = np.asarray([saved[e["episode_key"]][t] for e, t in slm], dtype=float)
    family = components.family(config)

    sources: dict[str, list[dict[str, float]]] = {
        "stage": [{**e["steps"][t]["features"], "p_fail": e["steps"][t]["p_fail"]} for e, t in slm]
    }
    agent_dir = stage / "agent"
    same: dict[str, float] = {}  # per replay: the share of steps choosing the logged action
    fitted: Any = None
    tau = 1.0
    for name, backend in (("resampled", config.router.backend), (args.backend, args.backend)):
        agent = RoutedAgent.from_pretrained(agent_dir, seed=args.seed, backend=backend)
        fitted, tau = agent.router, agent.threshold
        drawn = redraw_features(
            agent,
            episodes,
            family=family,
            max_steps=config.env.max_steps,
            seed=args.seed,
            desc=f"{name} ({backend})",
        )
        drawn_rows = [drawn[e["episode_key"]][t] or {} for e, t in slm]  # SLM-acted: not None
        logged = [e["steps"][t]["action"] for e, t in slm]
        same[name] = float(
            np.mean([r["action"] == a for r, a in zip(drawn_rows, logged, strict=True)])
        )
        rows = [r["features"] for r in drawn_rows]
        p_fail = agent.router.p_fail(np.asarray([[r[f] for f in FEATURE_NAMES] for r in rows]))
        sources[name] = [{**r, "p_fail": float(p)} for r, p in zip(rows, p_fail, strict=True)]
        del agent
    # The stage recorded the p_fail of the router it played with (none, or the mixed rollouts'
    # random one): score its features with the fitted router, as the replays are.
    recorded = np.asarray([[r[f] for f in FEATURE_NAMES] for r in sources["stage"]])
    for row, p in zip(sources["stage"], fitted.p_fail(recorded), strict=True):
        row["p_fail"] = float(p)

    names = list(sources)

    def column(name: str, key: str) -> np.ndarray:
        return np.asarray([row[key] for row in sources[name]], dtype=float)

    mismatched = {
        f"{f} ({n})": int(np.sum(~np.isclose(column("stage", f), column(n, f), atol=1e-5)))
        for f in STATE_FEATURES
        for n in names[1:]
    }
    lines = [
        f"# Router features by backend: {config.name}",
        "",
        f"{len(slm)} SLM-acted steps of {len(episodes)} router-stage rollouts; "
        f"{int(y.sum())} labelled failing (counterfactual). tau {tau:.4f}. "
        f"Replays sample with seed {args.seed}; stage backend {config.router.backend}, "
        f"evaluation backend {args.backend}.",
        "Share of replayed steps whose chosen action is the logged one: "
        + ", ".join(f"{n} {v:.3f}" for n, v in same.items())
        + ".",
        "Steps whose state features differ from the recorded ones (0: the replay reproduces "
        "the stage's states): "
        + (", ".join(f"{k} {v}" for k, v in mismatched.items() if v) or "none")
        + ".",
        "",
        "| feature | "
        + " | ".join(f"mean {n}" for n in names)
        + " | "
        + " | ".join(f"rank corr stage~{n}" for n in names[1:])
        + " |",
        "|---|" + "---:|" * (2 * len(names) - 1),
    ]
    for f in [*FEATURE_NAMES, "p_fail"]:
        if f in STATE_FEATURES:
            continue
        means = " | ".join(f"{column(n, f).mean():.4f}" for n in names)
        corrs = " | ".join(f"{spearman(column('stage', f), column(n, f)):.3f}" for n in names[1:])
        lines.append(f"| {f} | {means} | {corrs} |")
    lines += [
        "",
        "| source | share over tau | AUROC router | AUROC entropy | Brier router |",
        "|---|---:|---:|---:|---:|",
    ]
    summary = {}
    for n in names:
        p = column(n, "p_fail")
        entry = {
            "share_over_tau": float(np.mean(p > tau)),
            "auroc_router": metrics.auroc(p, y),
            "auroc_entropy": metrics.auroc(column(n, "chosen_entropy_mean"), y),
            "brier_router": metrics.brier(p, y),
        }
        summary[n] = entry
        lines.append(
            f"| {n} | {entry['share_over_tau']:.3f} | {entry['auroc_router']:.3f} | "
            f"{entry['auroc_entropy']:.3f} | {entry['brier_router']:.4f} |"
        )
    lines += [
        "",
        "`stage` is in-sample for the router (it was fitted on these features); `resampled` and "
        f"`{args.backend}` are fresh samples of the same states, so their difference is the "
        "backend's.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        args.out.write_text(text)
        rounded = {
            n: [{k: round(v, 6) for k, v in r.items()} for r in rs] for n, rs in sources.items()
        }
        args.out.with_suffix(".json").write_text(
            json.dumps(
                {"summary": summary, "labels": y.tolist(), "sources": rounded},
                separators=(",", ":"),
            )
        )


if __name__ == "__main__":
    main()
