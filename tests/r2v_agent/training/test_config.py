"""Pipeline configs: every field documented, wrong fields and values named."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from r2v_agent.config import STAGES, PipelineConfig
from r2v_agent.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[3] / "benchmarks" / "configs"
RESULTS = CONFIGS.parent / "results"

#: Committed stages trained before a field whose default changed what they compute
#: (``router.min_isotonic_steps``): a rerun retrains them, and only them.
STALE_STAGES = {("textworld-cpu", "router")}


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_shipped_configs_load(name: str) -> None:
    config = PipelineConfig.from_yaml(CONFIGS / name)
    assert config.run_dir.is_absolute()


def test_the_fresh_textworld_config_reuses_the_first_four_stages() -> None:
    # Its README tells users to link textworld-cpu's stage folders: only the router may differ.
    base = PipelineConfig.from_yaml(CONFIGS / "textworld-cpu.yaml")
    fresh = PipelineConfig.from_yaml(CONFIGS / "textworld-cpu-fresh.yaml")
    for stage in ("collect", "bc", "verifier", "dpo"):
        assert fresh.stage_hash(stage) == base.stage_hash(stage), stage
    assert fresh.stage_hash("router") != base.stage_hash("router")
    assert fresh.router.fresh_tasks and not base.router.fresh_tasks


@pytest.mark.parametrize(
    "name",
    sorted(
        p.parent.name
        for p in RESULTS.glob("*/stages.json")
        if (CONFIGS / f"{p.parent.name}.yaml").exists()
    ),
)
def test_committed_runs_keep_their_stage_hashes(name: str) -> None:
    # A field added later hashes only when set, so a committed run resumes by its stage
    # hashes instead of retraining everything after each new setting.
    config = PipelineConfig.from_yaml(CONFIGS / f"{name}.yaml")
    stages = json.loads((RESULTS / name / "stages.json").read_text())
    for stage, entry in stages.items():
        if stage in STAGES and "hash" in entry and (name, stage) not in STALE_STAGES:
            assert config.stage_hash(stage) == entry["hash"], stage


def test_a_new_setting_changes_the_hash_once_set() -> None:
    a, b = PipelineConfig(), PipelineConfig()
    b.policy.action_log = True
    assert all(a.stage_hash(s) != b.stage_hash(s) for s in STAGES)
    b.policy.action_log = False
    assert all(a.stage_hash(s) == b.stage_hash(s) for s in STAGES)


def test_a_speed_setting_leaves_the_hash_alone() -> None:
    # Labels do not depend on how many processes compute them (the smoke pipeline test checks
    # that), so changing the count must not retrain the router stage.
    a, b = PipelineConfig(), PipelineConfig()
    b.router.label_workers = 4
    assert all(a.stage_hash(s) == b.stage_hash(s) for s in STAGES)


def test_every_field_is_documented() -> None:
    config = PipelineConfig()
    for section in [
        config,
        *(
            getattr(config, f.name)
            for f in dataclasses.fields(config)
            if dataclasses.is_dataclass(getattr(config, f.name))
        ),
    ]:
        for f in dataclasses.fields(section):
            assert f.metadata.get("help"), f"{type(section).__name__}.{f.name} has no help text"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bc: {lerning_rate: 0.1}", r"bc\.lerning_rate: unknown field; known: .*learning_rate"),
        ("colect: {workers: 2}", r"colect: unknown field"),
        ("bc: {epochs: two}", r"bc\.epochs: expected an integer, got 'two'"),
        ("bc: {lora: 1}", r"bc\.lora: expected true or false"),
        (
            "router: {calibration: platt}",
            r"router\.calibration: must be 'temperature' or 'isotonic'",
        ),
        ("router: {min_isotonic_steps: 1}", r"router\.min_isotonic_steps: must be >= 2"),
        ("router: {cvar_alpha: 0}", r"router\.cvar_alpha: must be in \(0, 1\]"),
        ("router: {label_workers: 0}", r"router\.label_workers: must be at least 1"),
        ("router: {backend: vllm}", r"router\.backend: must be 'transformers' or 'llamacpp'"),
        ("router: {feature_draws: 0}", r"router\.feature_draws: must be at least 1"),
        ("env: {perturbation: 'flaky_tool(q=1)'}", r"env\.perturbation: .*flaky_tool"),
        ("env: [1, 2]", r"env: must be a mapping"),
        ("policy: {k: 1}", r"policy\.k: need at least 2"),
        ("- a\n- b", r"top level must be a mapping"),
        ("bc: {epochs: [", r"not valid YAML"),
    ],
)
def test_bad_config_is_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        PipelineConfig.from_yaml(path)


def test_stage_hash_changes_downstream_only() -> None:
    a = PipelineConfig()
    b = PipelineConfig()
    b.dpo.mu = 0.9
    same = [s for s in STAGES if a.stage_hash(s) == b.stage_hash(s)]
    assert same == ["collect", "bc", "verifier"]
    c = PipelineConfig()
    c.env.max_steps = 99
    assert all(a.stage_hash(s) != c.stage_hash(s) for s in STAGES)
