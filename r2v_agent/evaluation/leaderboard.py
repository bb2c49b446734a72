"""Result files -> the leaderboard: a Markdown and CSV table, the frontier and reliability plots.

One row per (env, method, point). Columns: episodes and games; success with a 95% bootstrap CI
that resamples games (a game's perturbation seeds share its difficulty, so episodes are not
independent); LLM-call share (teacher steps / steps); cost (USD per episode, from the teacher's
price table); the worst perturbation seed's success and CVaR_alpha of failure across seeds; the
router's Brier score and ECE on the steps where the SLM acted, against the label the router was
trained to predict -- the ``progress`` label (1 = a wrong move: no progress, judged by the
expert's action when the tool failed, or the last step of a failed episode); a router trained on
``counterfactual`` labels (teacher rollouts from each step) is not scored here, as evaluation
episodes carry no such label (its held-out calibration is in the router stage's report); for
each swept method the area under its success-vs-LLM-share curve. Below the table: R2V against
the entropy router at the nearest LLM-call share, paired on the same game and perturbation seed
-- a randomisation test and CI over games, and McNemar's test per episode --, and the entropy
router's LLM-call share at R2V's success (interpolated along its sweep, SLM-only and LLM-only
being its end points).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from r2v_agent import metrics
from r2v_agent.errors import ConfigError
from r2v_agent.evaluation.frontier import (
    Episode,
    Estimate,
    FrontierPoint,
    frontier_area,
    matched_cost,
)
from r2v_agent.trajectories import read_episodes

__all__ = [
    "Row",
    "build_rows",
    "render_markdown",
    "render_csv",
    "headline",
    "plot_frontier",
    "plot_reliability",
    "load_records",
    "load_labelled_runs",
    "write_leaderboard",
    "router_label_of",
    "default_router_label",
    "ROUTER_LABELS",
    "covariate_shift",
    "render_shift",
    "ShiftRow",
]

ALPHA = 0.4  #: CVaR share of worst perturbation seeds
#: Routers whose points form a success-vs-LLM-share frontier (R2V's own tau is one of its points).
FRONTIER_METHODS = ("entropy", "verifier", "r2v")
_ORDER = {
    n: i
    for i, n in enumerate(("slm", "llm", "random", "entropy", "verifier", "ppo", "r2v", "oracle"))
}


@dataclass
class Row:
    env: str
    method: str
    name: str
    point: float | None
    episodes: int
    games: int
    success: float
    ci_low: float
    ci_high: float
    llm_share: float
    cost_per_episode: float
    worst_seed_success: float
    cvar_failure: float
    brier: float | None
    ece: float | None
    auc: float | None = None
    outcomes: dict[tuple[Any, Any], bool] = field(default_factory=dict, repr=False)
    game_of: dict[tuple[Any, Any], str] = field(default_factory=dict, repr=False)
    usd: dict[tuple[Any, Any], float] = field(default_factory=dict, repr=False)
    p_fail: list[float] = field(default_factory=list, repr=False)
    labels: list[float] = field(default_factory=list, repr=False)
    #: per episode (perturbation seed, env seed): game, success, escalations, steps
    frontier: FrontierPoint | None = field(default=None, repr=False)


def load_records(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Every episode of the result files; a missing, unreadable or empty file is a
    :class:`ConfigError` naming it (nothing is written for a table without episodes)."""
    records: dict[str, dict[str, Any]] = {}
    for path in paths:
        if not Path(path).is_file():
            raise ConfigError(f"result file {str(path)!r} does not exist")
        before = len(records)
        for record in read_episodes(path):
            records[f"{path}:{record['episode_key']}"] = record
        if len(records) == before:
            raise ConfigError(f"result file {str(path)!r} holds no episode records")
    return list(records.values())


def load_labelled_runs(
    specs: Iterable[str], method: str
) -> tuple[dict[str, dict[tuple[Any, Any], dict[str, Any]]], list[tuple[Any, Any]]]:
    """``LABEL=FILE`` specs (one agent or setting per file) -> each label's ``method`` episodes
    keyed by (perturbation seed, env seed), and the keys every file played, sorted. A malformed
    spec, a file without that method, or files sharing no episode are a :class:`ConfigError`."""
    runs: dict[str, dict[tuple[Any, Any], dict[str, Any]]] = {}
    for spec in specs:
        label, sep, path = spec.partition("=")
        if not sep or not label or not path:
            raise ConfigError(f"expected LABEL=FILE, got {spec!r}")
        episodes = {
            (r["perturbation_seed"], r["env_seed"]): r
            for r in load_records([path])
            if r["agent"] == method
        }
        if not episodes:
            raise ConfigError(f"{path!r} holds no {method!r} episode")
        runs[label] = episodes
    shared = sorted(set.intersection(*(set(e) for e in runs.values())), key=str) if runs else []
    if not shared:
        raise ConfigError("the files share no episode")
    return runs, shared


def _env_label(record: dict[str, Any]) -> str:
    kwargs = record.get("extra", {}).get("env_kwargs") or {}
    suffix = ",".join(f"{k}={v}" for k, v in sorted(kwargs.items()))
    return f"{record['env_id']}" + (f"[{suffix}]" if suffix else "")


def _step_labels(record: dict[str, Any]) -> list[float]:
    from r2v_agent.groundtruth import step_labels  # the rule the router was trained on

    return step_labels([record], "progress").tolist()


#: The step labels a router may be trained on; only ``progress`` can be read off episodes.
ROUTER_LABELS = ("progress", "counterfactual")


def router_label_of(results: str | Path) -> str | None:
    """The label the run's router was trained on, from the ``stages.json`` beside a results
    file (what ``benchmarks/run.py``'s runs keep), or ``None`` if there is none."""
    stages = Path(results).parent / "stages.json"
    try:
        label = json.loads(stages.read_text())["router"]["stats"]["label"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return str(label) if label in ROUTER_LABELS else None


def default_router_label(paths: Iterable[str | Path]) -> str:
    """The label the first results file with a ``stages.json`` beside it records, else
    ``progress``."""
    return next((label for label in map(router_label_of, paths) if label is not None), "progress")


def _method_name(record: dict[str, Any]) -> str:
    """The method a record ran (``entropy`` for ``entropy@0.3``)."""
    return str(record.get("extra", {}).get("method", record["agent"].split("@")[0]))


def _game(record: dict[str, Any]) -> str:
    return str(record.get("task_id") or record.get("env_seed"))


def build_rows(
    records: list[dict[str, Any]], *, seed: int = 0, router_label: str = "progress"
) -> list[Row]:
    """One :class:`Row` per (env, method). ``router_label`` is the label R2V's router was
    trained on: with ``counterfactual`` its Brier/ECE are left out (see the module doc)."""
    if router_label not in ROUTER_LABELS:
        raise ConfigError(f"router_label must be one of {ROUTER_LABELS}, got {router_label!r}")
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        groups[(_env_label(record), record["agent"])].append(record)
    rows = []
    for (env, method), group in sorted(groups.items()):
        extra = group[0].get("extra", {})
        name = _method_name(group[0])
        point = extra.get("point")
        success = [float(r["success"]) for r in group]
        games = [_game(r) for r in group]
        mean, low, high = metrics.cluster_bootstrap_ci(success, games, seed=seed)
        steps = sum(len(r["steps"]) for r in group)
        by_seed: dict[Any, list[float]] = defaultdict(list)
        for r in group:
            by_seed[r["perturbation_seed"]].append(float(r["success"]))
        seed_success = [sum(v) / len(v) for v in by_seed.values()]
        p, y = [], []
        for r in group:
            for step, label in zip(r["steps"], _step_labels(r), strict=True):
                # the label says whether the SLM's action failed: only where the SLM acted
                if step.get("p_fail") is not None and step["actor"] == "slm" and step["candidates"]:
                    p.append(float(step["p_fail"]))
                    y.append(label)
        scored = name in ("entropy", "verifier", "ppo") or (
            name == "r2v" and router_label == "progress"
        )
        has_router = scored and bool(p)
        rows.append(
            Row(
                env=env,
                method=method,
                name=name,
                point=float(point) if point is not None else None,
                episodes=len(group),
                games=len(set(games)),
                success=mean,
                ci_low=low,
                ci_high=high,
                llm_share=sum(r["escalations"] for r in group) / max(1, steps),
                cost_per_episode=sum(float(r["cost"].get("usd", 0.0)) for r in group) / len(group),
                worst_seed_success=min(seed_success),
                cvar_failure=metrics.cvar([1.0 - s for s in seed_success], ALPHA),
                brier=metrics.brier(p, y) if has_router else None,
                ece=metrics.ece(p, y) if has_router else None,
                outcomes={
                    (r["perturbation_seed"], r["env_seed"]): bool(r["success"]) for r in group
                },
                game_of={(r["perturbation_seed"], r["env_seed"]): _game(r) for r in group},
                usd={
                    (r["perturbation_seed"], r["env_seed"]): float(r["cost"].get("usd", 0.0))
                    for r in group
                },
                p_fail=p if has_router else [],
                labels=y if has_router else [],
                frontier=FrontierPoint(
                    method,
                    {
                        (r["perturbation_seed"], r["env_seed"]): Episode(
                            _game(r), bool(r["success"]), int(r["escalations"]), len(r["steps"])
                        )
                        for r in group
                    },
                ),
            )
        )
    rows.sort(
        key=lambda r: (r.env, _ORDER.get(r.name, 99), r.point if r.point is not None else -1.0)
    )
    # Area under each router's frontier over LLM share [0, 1]: its measured points joined by
    # straight lines, SLM-only and LLM-only as the ends (so areas of different sweeps compare).
    for env in {r.env for r in rows}:
        here = [r for r in rows if r.env == env]
        ends = [r for r in here if r.name in ("slm", "llm")]
        if len(ends) != 2:
            continue
        for name in FRONTIER_METHODS:
            frontier = [r for r in here if r.name == name]
            if frontier:
                auc = metrics.area_under_curve(
                    [r.llm_share for r in frontier + ends], [r.success for r in frontier + ends]
                )
                for point in frontier:
                    point.auc = auc
    return rows


@dataclass
class ShiftRow:
    """A routed method's steps before and after its episode's first escalation."""

    env: str
    method: str
    phase: str  #: "before" or "after" the episode's first escalation
    steps: int
    escalation_rate: float
    slm_steps: int
    brier: float | None
    ece: float | None


def covariate_shift(
    records: list[dict[str, Any]], *, router_label: str = "progress"
) -> list[ShiftRow]:
    """Per routed method (R2V and the swept routers): escalation rate, and the router's Brier/ECE
    on SLM-acted steps against the progress label, on the steps before the episode's first
    escalation and after it. A router trained on SLM-only rollouts never saw the states after
    an escalation; this is where that shows. ``router_label`` is the label R2V's router was
    trained on: with ``counterfactual`` its Brier/ECE are left out (episodes do not carry it)."""
    if router_label not in ROUTER_LABELS:
        raise ConfigError(f"router_label must be one of {ROUTER_LABELS}, got {router_label!r}")
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        name = _method_name(record)
        if name in ("r2v", "entropy", "verifier", "ppo"):
            groups[(_env_label(record), record["agent"])].append(record)
    rows = []
    for (env, method), group in sorted(groups.items()):
        phases: dict[str, dict[str, list[float]]] = {
            "before": {"escalated": [], "p": [], "y": []},
            "after": {"escalated": [], "p": [], "y": []},
        }
        for record in group:
            escalated_yet = False
            for step, label in zip(record["steps"], _step_labels(record), strict=True):
                phase = phases["after" if escalated_yet else "before"]
                teacher = step["actor"] == "teacher"
                phase["escalated"].append(float(teacher))
                if not teacher and step.get("p_fail") is not None and step["candidates"]:
                    phase["p"].append(float(step["p_fail"]))
                    phase["y"].append(label)
                escalated_yet = escalated_yet or teacher
        # Scored only against the label the router predicts (the entropy and verifier routers'
        # scores are judged on progress, as in the leaderboard).
        comparable = router_label == "progress" or _method_name(group[0]) != "r2v"
        for name, phase in phases.items():
            if not phase["escalated"]:
                continue
            scored = bool(phase["p"]) and comparable
            rows.append(
                ShiftRow(
                    env=env,
                    method=method,
                    phase=name,
                    steps=len(phase["escalated"]),
                    escalation_rate=sum(phase["escalated"]) / len(phase["escalated"]),
                    slm_steps=len(phase["p"]),
                    brier=metrics.brier(phase["p"], phase["y"]) if scored else None,
                    ece=metrics.ece(phase["p"], phase["y"]) if scored else None,
                )
            )
    return rows


def render_shift(rows: list[ShiftRow]) -> str:
    head = ["env", "method", "steps", "escalated", "SLM steps", "Brier", "ECE"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r.env, f"{r.method} ({r.phase} 1st escalation)", str(r.steps)]
        cells += [_fmt(r.escalation_rate), str(r.slm_steps), _fmt(r.brier), _fmt(r.ece)]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


COLUMNS = [
    "env",
    "method",
    "episodes",
    "games",
    "success",
    "95% CI (games)",
    "LLM share",
    "cost/episode ($)",
    "worst-seed success",
    f"CVaR{ALPHA:g} failure",
    "router Brier",
    "router ECE",
    "AUC success-LLM share",
]


def _cells(row: Row) -> list[str]:
    return [
        row.env,
        row.method,
        str(row.episodes),
        str(row.games),
        _fmt(row.success),
        f"[{_fmt(row.ci_low)}, {_fmt(row.ci_high)}]",
        _fmt(row.llm_share),
        _fmt(row.cost_per_episode, 5),
        _fmt(row.worst_seed_success),
        _fmt(row.cvar_failure),
        _fmt(row.brier),
        _fmt(row.ece),
        _fmt(row.auc),
    ]


def _bill_lines(env: str, r2v: Row, other: Row, llm: Row | None, keys: list[Any]) -> list[str]:
    """The dollar cost per episode of R2V and another router on their paired episodes: the
    LLM-call share counts calls, the bill counts the tokens each call reads."""
    a = [r2v.usd.get(k, 0.0) for k in keys]
    b = [other.usd.get(k, 0.0) for k in keys]
    if not any(a) and not any(b):
        return []
    paired = metrics.paired_cluster_test(a, b, [r2v.game_of[k] for k in keys])
    mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
    ratio = f" ({mean_a / mean_b:.2f}x)" if mean_b > 0 else ""
    versus = f"; LLM-only ${llm.cost_per_episode:.5f}" if llm is not None else ""
    return [
        f"- {env}: cost per episode on those episodes, R2V ${mean_a:.5f} vs {other.method} "
        f"${mean_b:.5f}{ratio}: difference ${paired.difference:+.5f}, 95% CI over games "
        f"[{paired.ci_low:+.5f}, {paired.ci_high:+.5f}]{versus}."
    ]


def headline(rows: list[Row]) -> list[str]:
    """R2V vs LLM-only and vs the entropy router, per env, as sentences with numbers."""
    lines = []
    for env in sorted({r.env for r in rows}):
        here = [r for r in rows if r.env == env]
        r2v = next((r for r in here if r.method == "r2v"), None)
        llm = next((r for r in here if r.name == "llm"), None)
        entropy = sorted((r for r in here if r.name == "entropy"), key=lambda r: r.llm_share)
        if r2v is None:
            continue
        if llm is not None:
            lines.append(
                f"- {env}: R2V success {_fmt(r2v.success)} at LLM share {_fmt(r2v.llm_share)}; "
                f"LLM-only {_fmt(llm.success)} (gap {100 * (llm.success - r2v.success):+.1f} points)."
            )
        if entropy:
            nearest = min(entropy, key=lambda r: abs(r.llm_share - r2v.llm_share))
            keys = sorted(set(r2v.outcomes) & set(nearest.outcomes), key=str)
            test = metrics.mcnemar(
                [r2v.outcomes[k] for k in keys], [nearest.outcomes[k] for k in keys]
            )
            if keys:
                paired = metrics.paired_cluster_test(
                    [r2v.outcomes[k] for k in keys],
                    [nearest.outcomes[k] for k in keys],
                    [r2v.game_of[k] for k in keys],
                )
                lines.append(
                    f"- {env}: R2V vs {nearest.method} (LLM share {_fmt(nearest.llm_share)}, "
                    f"{abs(nearest.llm_share - r2v.llm_share) * 100:.1f} share points from R2V's), "
                    f"{paired.pairs} paired episodes in {paired.clusters} games: success "
                    f"difference {paired.difference:+.3f}, 95% CI over games "
                    f"[{paired.ci_low:+.3f}, {paired.ci_high:+.3f}], randomisation p = "
                    f"{paired.p_value:.3g}{' (exact)' if paired.exact else ''}."
                )
                lines += _bill_lines(env, r2v, nearest, llm, keys)
            lines.append(
                f"- {env}: McNemar per episode, R2V vs {nearest.method}: R2V-only wins "
                f"{test.only_a}, entropy-only wins {test.only_b}, p = {test.p_value:.3g}"
                f"{' (exact)' if test.exact else ''} (treats episodes as independent)."
            )
            # SLM-only and LLM-only are the entropy router's end points (threshold +inf / -inf).
            slm = next((r for r in here if r.name == "slm"), None)
            lines += _matched_cost_lines(env, r2v, entropy, slm, llm)
            frontier = sorted((r for r in here if r.name == "r2v"), key=lambda r: r.llm_share)
            lines += _reverse_lines(env, frontier, entropy, slm, llm)
        lines += _target_lines(env, here)
        lines += _area_lines(env, here)
    return lines


#: The issue's target: R2V's LLM share at most this times the entropy router's at matched
#: success, and within this many points of LLM-only at no more than half the LLM calls.
TARGET_SHARE_RATIO = 0.6
TARGET_LLM_GAP = 0.03
TARGET_MAX_SHARE = 0.5


def _matched_cost_lines(
    env: str, r2v: Row, entropy: list[Row], slm: Row | None, llm: Row | None
) -> list[str]:
    """The entropy router's frontier at R2V's success and at R2V's LLM share, with CIs over
    games on the episodes every point played (``frontier.matched_cost``)."""
    if r2v.frontier is None or any(r.frontier is None for r in entropy):
        return []
    try:
        m = matched_cost(
            r2v.frontier,
            [r.frontier for r in entropy if r.frontier is not None],
            slm=slm.frontier if slm is not None else None,
            llm=llm.frontier if llm is not None else None,
            baseline="entropy",
        )
    except ValueError:  # no episode played by every point
        return [f"- {env}: R2V and the entropy sweep share no episode: no matched comparison."]
    on = f"on the {m.episodes} episodes ({m.games} games) every point played"
    lines = []
    share = m.share_at_point_success
    if np.isinf(share.value):
        lines.append(
            f"- {env}: the entropy sweep never reaches R2V's success {_fmt(m.point_success)} ({on})."
        )
    elif share.value == 0:
        lines.append(
            f"- {env}: R2V's success {_fmt(m.point_success)} is no higher than SLM-only's: "
            f"no LLM share is needed to match it ({on})."
        )
    else:
        lines.append(
            f"- {env}: at R2V's success the entropy router needs LLM share {_fmt(share.value)} "
            f"({m.share_note}); 95% CI over games {_ci(share)}; R2V uses {_fmt(m.point_share)} "
            f"({m.share_ratio.value:.2f}x, CI {_ci(m.share_ratio, 2)}) ({on}); target <= "
            f"{TARGET_SHARE_RATIO}x: {'met' if m.share_ratio.value <= TARGET_SHARE_RATIO else 'not met'}."
        )
    at = m.success_at_point_share
    if not np.isnan(at.value):
        lines.append(
            f"- {env}: at R2V's LLM share {_fmt(m.point_share)} the entropy router reaches success "
            f"{_fmt(at.value)} ({m.success_note}); R2V {_fmt(m.point_success)}: difference "
            f"{m.success_gap.value:+.3f}, 95% CI over games {_ci(m.success_gap, signed=True)} ({on})."
        )
    return lines


def _reverse_lines(
    env: str, frontier: list[Row], entropy: list[Row], slm: Row | None, llm: Row | None
) -> list[str]:
    """The other direction: at each entropy point's success, the LLM share R2V's frontier (its
    own tau and its sweep) needs, and its ratio to the entropy point's share."""
    points = [r.frontier for r in frontier if r.frontier is not None]
    if len(points) < 2 or any(r.frontier is None for r in entropy):
        return []
    lines = []
    for row in entropy:
        assert row.frontier is not None
        try:
            m = matched_cost(
                row.frontier,
                points,
                slm=slm.frontier if slm is not None else None,
                llm=llm.frontier if llm is not None else None,
                baseline="r2v",
            )
        except ValueError:
            continue
        share = m.share_at_point_success  # R2V's frontier at the entropy point's success
        if np.isinf(share.value) or share.value == 0 or m.point_share == 0:
            continue
        # the entropy point's share over R2V's -> R2V's over the entropy point's (1 / ratio);
        # a resample where R2V's frontier never got there has ratio 0: an open upper end
        with np.errstate(divide="ignore"):
            low, high = 1.0 / np.array([m.share_ratio.ci_high, m.share_ratio.ci_low])
        lines.append(
            f"- {env}: at {row.method}'s success {_fmt(m.point_success)} (LLM share "
            f"{_fmt(m.point_share)}) R2V's frontier needs LLM share {_fmt(share.value)} "
            f"({m.share_note}), CI {_ci(share)}: {share.value / m.point_share:.2f}x the entropy "
            f"router's, CI [{low:.2f}, {high:.2f}] (on the {m.episodes} episodes every point "
            "played)."
        )
    return lines


def _target_lines(env: str, here: list[Row]) -> list[str]:
    """The issue's second target on R2V's whole frontier: its best point at no more than
    ``TARGET_MAX_SHARE`` LLM share, against LLM-only, paired over games."""
    llm = next((r for r in here if r.name == "llm"), None)
    within = [r for r in here if r.name == "r2v" and r.llm_share <= TARGET_MAX_SHARE]
    if llm is None or not within:
        return []
    best = max(within, key=lambda r: r.success)
    keys = sorted(set(best.outcomes) & set(llm.outcomes), key=str)
    if not keys:
        return []
    gap = metrics.paired_cluster_test(
        [llm.outcomes[k] for k in keys],
        [best.outcomes[k] for k in keys],
        [best.game_of[k] for k in keys],
    )
    met = gap.difference <= TARGET_LLM_GAP
    return [
        f"- {env}: target, within {100 * TARGET_LLM_GAP:.0f} points of LLM-only at <= "
        f"{100 * TARGET_MAX_SHARE:.0f}% LLM share: R2V's best such point {best.method} (share "
        f"{_fmt(best.llm_share)}): LLM-only minus it {gap.difference:+.3f} "
        f"[{gap.ci_low:+.3f}, {gap.ci_high:+.3f}] over {gap.clusters} games -- "
        f"{'met' if met else 'not met'}."
    ]


def _area_lines(env: str, here: list[Row]) -> list[str]:
    """Area under each router's frontier over [0, 1], and R2V's minus each other's, with CIs
    over games on the episodes every point of every frontier played."""
    slm = next((r for r in here if r.name == "slm"), None)
    llm = next((r for r in here if r.name == "llm"), None)
    frontiers = {
        name: [r.frontier for r in here if r.name == name and r.frontier is not None]
        for name in FRONTIER_METHODS
    }
    frontiers = {name: points for name, points in frontiers.items() if points}
    if slm is None or llm is None or slm.frontier is None or llm.frontier is None:
        return []
    if "r2v" not in frontiers or len(frontiers) < 2:
        return []
    try:
        result = frontier_area(frontiers, slm=slm.frontier, llm=llm.frontier)
    except ValueError:
        return [f"- {env}: the frontiers share no episode: no area comparison."]
    parts = [
        f"{name} {result.areas[name].value:.3f} {_ci(result.areas[name])} "
        f"({len(points)} point{'s' if len(points) > 1 else ''})"
        for name, points in frontiers.items()
    ]
    lines = [
        f"- {env}: area under the success-vs-LLM-share frontier over [0, 1] (SLM-only and "
        f"LLM-only as ends), 95% CI over games, on the {result.episodes} episodes "
        f"({result.games} games) every point played: " + "; ".join(parts) + "."
    ]
    for name in frontiers:
        if name != "r2v":
            diff = result.difference("r2v", name)
            lines.append(
                f"- {env}: area of R2V's frontier minus {name}'s: {diff.value:+.3f}, 95% CI over "
                f"games {_ci(diff, signed=True)}."
            )
    return lines


def _ci(estimate: Estimate, digits: int = 3, *, signed: bool = False) -> str:
    """``[low, high]``; an undefined share of resamples (e.g. never reached) is named."""

    def one(value: float) -> str:
        if np.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"

    text = f"[{one(estimate.ci_low)}, {one(estimate.ci_high)}]"
    if estimate.undefined:
        text += f" (undefined in {100 * estimate.undefined:.0f}% of resamples)"
    return text


def render_markdown(rows: list[Row], router_label: str = "progress") -> str:
    out = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    out += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    lines = headline(rows)
    if router_label != "progress" and any(r.name == "r2v" for r in rows):
        lines.append(
            f"- R2V's router was trained on {router_label} labels, which evaluation episodes do "
            "not carry: its Brier/ECE are in the router stage's held-out report, not here."
        )
    if lines:
        out += ["", *lines]
    return "\n".join(out) + "\n"


def render_csv(rows: list[Row]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(_cells(row))
    return buffer.getvalue()


def plot_frontier(rows: list[Row], path: str | Path, *, cost: str = "share") -> None:
    """Success vs LLM-call share (``cost="share"``) or dollars per episode (``"usd"``) per env:
    sweeps as curves, single methods as points."""

    if cost not in ("share", "usd"):
        raise ValueError(f"cost must be 'share' or 'usd', got {cost!r}")

    def x_of(row: Row) -> float:
        return row.llm_share if cost == "share" else row.cost_per_episode

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = sorted({r.env for r in rows})
    fig, axes = plt.subplots(1, len(envs), figsize=(6.5 * len(envs), 4.8), squeeze=False)
    for ax, env in zip(axes[0], envs, strict=True):
        here = [r for r in rows if r.env == env]
        for name in sorted({r.name for r in here}):
            group = sorted((r for r in here if r.name == name), key=x_of)
            xs = [x_of(r) for r in group]
            ys = [r.success for r in group]
            if len(group) > 1 and name != "random":
                # a sweep: its points joined, the game-clustered 95% CI as a band
                (line,) = ax.plot(xs, ys, "o-", label=name, alpha=0.9)
                lows, highs = [r.ci_low for r in group], [r.ci_high for r in group]
                ax.fill_between(xs, lows, highs, color=line.get_color(), alpha=0.15, lw=0)
            else:
                errs = [
                    [r.success - r.ci_low for r in group],
                    [r.ci_high - r.success for r in group],
                ]
                ax.errorbar(xs, ys, yerr=errs, fmt="s", capsize=3, label=name, alpha=0.85)
        if cost == "share":
            ax.set_xlabel("LLM-call share")
            ax.set_xlim(-0.03, 1.03)
        else:
            ax.set_xlabel("teacher cost per episode ($)")
        ax.set_ylabel("success rate")
        ax.set_ylim(-0.03, 1.03)
        ax.set_title(env, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    what = "LLM-call share" if cost == "share" else "dollars per episode"
    fig.suptitle(f"Success vs {what} (95% CIs resampling games: bands for sweeps)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_reliability(rows: list[Row], path: str | Path, method: str = "r2v") -> bool:
    """The router's reliability diagram (predicted p_fail vs observed failure), per env."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = [r for r in rows if r.method == method and r.p_fail]
    if not chosen:
        return False
    fig, axes = plt.subplots(1, len(chosen), figsize=(4.8 * len(chosen), 4.5), squeeze=False)
    for ax, row in zip(axes[0], chosen, strict=True):
        bins = metrics.reliability_bins(row.p_fail, row.labels)
        ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
        ax.plot(
            [b.mean_predicted for b in bins], [b.observed_rate for b in bins], "o-", label=method
        )
        for b in bins:
            ax.annotate(
                str(b.count),
                (b.mean_predicted, b.observed_rate),
                fontsize=7,
                xytext=(3, -9),
                textcoords="offset points",
            )
        ax.set_xlabel("predicted P(SLM fails)")
        ax.set_ylabel("observed failure rate")
        ax.set_title(f"{row.env}\nBrier {_fmt(row.brier)}, ECE {_fmt(row.ece)}", fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def write_leaderboard(
    paths: list[str | Path], out_dir: str | Path, router_label: str | None = None
) -> str:
    """Write the table and plots; ``router_label`` defaults to the one ``stages.json`` beside
    the first results file records, else ``progress``."""
    if router_label is None:
        router_label = default_router_label(paths)
    # bad input fails before anything is written
    records = load_records(paths)
    rows = build_rows(records, router_label=router_label)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = render_markdown(rows, router_label)
    shift = covariate_shift(records) if router_label == "progress" else []
    if shift:
        text += (
            "\nCovariate shift: routed methods' steps before and after the episode's first "
            "escalation (router Brier/ECE on SLM-acted steps, progress label):\n\n"
            + render_shift(shift)
        )
    (out_dir / "leaderboard.md").write_text(text)
    (out_dir / "leaderboard.csv").write_text(render_csv(rows))
    plot_frontier(rows, out_dir / "frontier.png")
    if any(r.cost_per_episode > 0 for r in rows):
        plot_frontier(rows, out_dir / "frontier_cost.png", cost="usd")
    plot_reliability(rows, out_dir / "reliability.png")
    return text
