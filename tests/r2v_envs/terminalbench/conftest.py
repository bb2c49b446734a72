from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
#: Terminal-Bench-format task folders written for these tests (one per feature).
TB_FORMAT = REPO / "tests" / "fixtures" / "tb_format"

needs_bwrap = pytest.mark.skipif(
    shutil.which("bwrap") is None,
    reason="bubblewrap is not installed (apt-get install bubblewrap; `make test` installs it)",
)


@pytest.fixture(scope="session")
def docker_host():
    """One private dockerd (and base image) for every docker test of the session."""
    from r2v_envs.terminalbench.backends.dockerd import ensure_base_image, private_dockerd

    root = Path(os.environ.get("R2V_TEST_DOCKER_ROOT", REPO / ".cache" / "dockerd"))
    with private_dockerd(root) as host:
        ensure_base_image(host)
        yield host


def play_expert(env, task_id: str) -> dict:
    """Reset ``env`` to ``task_id`` and follow ``info["expert_action"]`` to the end; the last info."""
    _, info = env.reset(options={"task_id": task_id})
    done = False
    while not done:
        _, _, terminated, truncated, info = env.step(info["expert_action"])
        done = terminated or truncated
    return info
