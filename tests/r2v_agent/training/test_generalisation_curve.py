"""benchmarks/generalisation_curve.py: the admissible-commands setting belongs to TextWorld."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from r2v_agent.config import PipelineConfig
from r2v_agent.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]


def _script():
    spec = importlib.util.spec_from_file_location(
        "generalisation_curve", ROOT / "benchmarks" / "generalisation_curve.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["textworld-main", "terminalbench-cpu"])
def test_a_point_config_sets_show_commands_only_on_textworld(name: str, tmp_path: Path) -> None:
    curve = _script()
    base = PipelineConfig.from_yaml(ROOT / "benchmarks" / "configs" / f"{name}.yaml")
    budget = {"examples": 64, "epochs": 1, "perturbation_seeds": 1, "run_root": tmp_path}
    config, label = curve.point_config(base, 12, commands=False, **budget)
    assert config.env.train_tasks == 12 and config.bc.max_examples == 64
    assert label == "plain+64ex/games-12"
    if name.startswith("textworld"):
        assert config.env.kwargs["show_commands"] is False
        on, _ = curve.point_config(base, 12, commands=True, **budget)
        assert on.env.kwargs["show_commands"] is True
    else:
        assert "show_commands" not in config.env.kwargs
        assert config.env.kwargs == base.env.kwargs
        with pytest.raises(ConfigError, match="TextWorld setting"):
            curve.point_config(base, 12, commands=True, **budget)


def test_the_script_refuses_a_bad_option_before_training_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = ROOT / "benchmarks" / "configs" / "terminalbench-cpu.yaml"
    out, runs = tmp_path / "curve", tmp_path / "runs"
    argv = ["--config", str(config), "--games", "6,12", "--commands", "on"]
    code = _script().main([*argv, "--out", str(out), "--run-root", str(runs)])
    assert code == 2
    assert "TextWorld setting" in capsys.readouterr().out
    assert not out.exists() and not runs.exists()


def test_a_lora_point_says_so_in_its_label_and_config(tmp_path: Path) -> None:
    curve = _script()
    base = PipelineConfig.from_yaml(ROOT / "benchmarks" / "configs" / "terminalbench-cpu.yaml")
    budget = {"examples": 64, "epochs": 1, "perturbation_seeds": 1, "run_root": tmp_path}
    config, label = curve.point_config(base, 12, commands=False, lora=True, **budget)
    assert config.bc.lora and config.bc.learning_rate == base.bc.learning_rate
    assert label == "plain+64ex+lora/games-12"
    config, label = curve.point_config(
        base, 12, commands=False, lora=True, learning_rate=2e-4, **budget
    )
    assert config.bc.learning_rate == 2e-4 and label == "plain+64ex+lora+lr0.0002/games-12"
    plain, _ = curve.point_config(base, 12, commands=False, **budget)
    assert not plain.bc.lora and plain.run_dir != config.run_dir  # its own stage folder
    with pytest.raises(ConfigError, match="learning-rate"):
        curve.point_config(base, 12, commands=False, learning_rate=0.0, **budget)


def test_the_plot_gives_each_setting_one_colour(tmp_path: Path, monkeypatch) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = _script()
    rows = [
        {"point": f"{tag}/games-{n}", "split": split, "success": 0.3, "ci_low": 0.1, "ci_high": 0.5}
        for tag in [f"setting{i}" for i in range(12)]  # more settings than tab10 has colours
        for n in (40, 480)
        for split in ("held-out", "training games")
    ]
    saved = []
    monkeypatch.setattr(plt.Figure, "savefig", lambda fig, path, **kw: saved.append(fig))
    curve.plot(rows, tmp_path / "curve.png")
    (ax,) = saved[0].axes
    colours: dict[str, set[tuple[float, ...]]] = {}
    for bars in ax.containers:  # one errorbar container a series, labelled "setting, split"
        tag, _, split = bars.get_label().partition(", ")
        colours.setdefault(tag, set()).add(tuple(bars.lines[0].get_color()))
    assert len(colours) == 12
    assert all(len(c) == 1 for c in colours.values())  # both splits of a setting share one
    assert len({next(iter(c)) for c in colours.values()}) == 12  # and settings differ
