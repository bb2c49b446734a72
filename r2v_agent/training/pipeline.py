"""``r2v pipeline``: collect -> BC -> verifier -> DPO -> router -> report, resumable.

Each stage writes into a temporary folder next to its final one and renames it into place only
when it has finished (``<run>/<stage>/stage.json`` is written last). A stage whose folder holds a
``stage.json`` with the same config hash (:meth:`PipelineConfig.stage_hash`) is skipped, so an
interrupted pipeline resumes at the stage it was in, and a changed setting reruns the stages it
affects and those after them.

The trained agent is ``<run>/router/agent`` (``RoutedAgent.from_pretrained`` loads it); the
report is ``<run>/report/report.md`` (and ``report_path`` if set).
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from r2v_agent.config import STAGES, PipelineConfig
from r2v_agent.errors import ConfigError, StageError

__all__ = ["run_pipeline", "run_stage", "stage_done"]

logger = logging.getLogger(__name__)


def stage_done(config: PipelineConfig, stage: str) -> bool:
    marker = config.run_dir / stage / "stage.json"
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()).get("hash") == config.stage_hash(stage)
    except (OSError, json.JSONDecodeError):
        return False


def run_stage(config: PipelineConfig, stage: str, *, force: bool = False) -> dict[str, Any]:
    """Run one stage (its inputs must exist); skipped when done for this config unless ``force``."""
    if stage not in STAGES:
        raise StageError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    final = config.run_dir / stage
    if stage_done(config, stage) and not force:
        logger.info("stage %s: up to date, skipped", stage)
        return dict(json.loads((final / "stage.json").read_text())["stats"])
    for upstream in STAGES[: STAGES.index(stage)]:
        if not stage_done(config, upstream):
            raise StageError(
                f"stage {stage!r} needs stage {upstream!r} to be done for this config first "
                f"(run `r2v pipeline --config ...`, or that stage)"
            )
    config.run_dir.mkdir(parents=True, exist_ok=True)
    for stale in config.run_dir.glob(f".{stage}.tmp-*"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix=f".{stage}.tmp-", dir=config.run_dir))
    start = time.perf_counter()
    try:
        stats = _runner(stage)(config, work)
        stats["seconds"] = round(time.perf_counter() - start, 1)
        marker = {
            "stage": stage,
            "hash": config.stage_hash(stage),
            "stats": stats,
            "config": config.to_dict(),
        }
        (work / "stage.json").write_text(json.dumps(marker, indent=2, default=_jsonable))
        if final.exists():
            shutil.rmtree(final)
        work.rename(final)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    # Later stages built on the old output are stale now.
    for later in STAGES[STAGES.index(stage) + 1 :]:
        marker_path = config.run_dir / later / "stage.json"
        if marker_path.exists() and not stage_done(config, later):
            logger.info("stage %s: outdated by %s", later, stage)
    return stats


def run_pipeline(
    config: PipelineConfig,
    *,
    force: bool = False,
    rerun_from: str | None = None,
    until: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Run every stage, skipping the up-to-date ones; ``force`` reruns all of them and
    ``rerun_from`` reruns that stage and every one after it (after a code change, say); given
    both, ``rerun_from`` decides where forcing starts. ``until`` stops after that stage (the
    demo skips the report, whose held-out evaluation ``r2v eval`` does at a larger scale)."""
    for name, value in (("rerun_from", rerun_from), ("until", until)):
        if value is not None and value not in STAGES:
            raise ConfigError(f"{name}: unknown stage {value!r}; stages are {STAGES}")
    first_forced = STAGES.index(rerun_from) if rerun_from else (0 if force else len(STAGES))
    last = STAGES.index(until) if until else len(STAGES) - 1
    results = {}
    for i, stage in enumerate(STAGES[: last + 1]):
        forced = i >= first_forced
        skip = stage_done(config, stage) and not forced
        print(f"== {stage} ({'skip: up to date' if skip else 'run'})")
        results[stage] = run_stage(config, stage, force=forced)
    return results


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _runner(stage: str) -> Callable[[PipelineConfig, Path], dict[str, Any]]:
    """The stage module's ``run(config, out_dir)`` (imported on use: each stage pulls its own
    heavy dependencies)."""
    module = importlib.import_module(f"r2v_agent.training.{_MODULES[stage]}")
    return module.run


_MODULES = {
    "collect": "collect",
    "bc": "bc",
    "verifier": "fit_verifier",
    "dpo": "dpo",
    "router": "fit_router",
    "report": "report",
}
