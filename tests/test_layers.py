"""The import contracts of ``make lint`` (pyproject's ``[tool.importlinter]``) hold, and they
catch a forbidden import: a copy of the packages with one added upward import breaks them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter not installed")


def _copy(tmp_path: Path) -> Path:
    for package in ("r2v_agent", "r2v_envs", "perturbations"):
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}  # the copy, not the installed project
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_contracts_hold_and_an_upward_import_breaks_them(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    clean = _lint(root)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "3 kept, 0 broken" in clean.stdout
    # The run-time router reaching up into training: what the re-layering removed.
    features = root / "r2v_agent" / "router" / "features.py"
    features.write_text(features.read_text() + "\nimport r2v_agent.training.fit_router  # noqa\n")
    broken = _lint(root)
    assert broken.returncode != 0
    assert "r2v_agent.router is not allowed to import r2v_agent.training" in broken.stdout
    # An env importing the agent breaks the second contract.
    core = root / "r2v_envs" / "core.py"
    core.write_text(core.read_text() + "\nimport r2v_agent.agent  # noqa\n")
    assert "r2v_envs is not allowed to import r2v_agent" in _lint(root).stdout
