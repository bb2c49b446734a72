from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_agent_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny-random agent (untrained router, rule verifier) to evaluate."""
    pytest.importorskip("torch")
    from r2v_agent import RoutedAgent

    directory = tmp_path_factory.mktemp("agent") / "agent"
    RoutedAgent.from_pretrained("tiny-random", k=3).save_pretrained(directory)
    return directory
