"""Router step labels: the policy's wrong moves, not the tool's failures."""

from __future__ import annotations

import numpy as np

from r2v_agent.groundtruth import step_labels


def _step(action: str, progress: bool, tool_error: bool = False, expert: str | None = "go north"):
    return {
        "action": action,
        "progress": progress,
        "tool_error": tool_error,
        "expert_action": expert,
    }


def test_progress_labels_by_hand() -> None:
    won = {
        "success": True,
        "steps": [
            _step("go north", True),  # progress: right
            _step("look", False),  # no progress: wrong
            _step("Go  North", False, tool_error=True),  # the tool failed on the expert's move
            _step("eat key", False, tool_error=True),  # the tool failed, but the move was wrong
            _step("dance", False, tool_error=True, expert=None),  # no expert: not blamed
            _step("go north", True),
        ],
    }
    lost = {"success": False, "steps": [_step("go north", True), _step("go north", True)]}
    labels = step_labels([won, lost], "progress")
    assert labels.dtype == np.float32
    assert labels.tolist() == [0, 1, 0, 1, 0, 0, 0, 1]  # the lost episode's last step is blamed
