"""Prompt formats: the history window and the action log of the steps it drops."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from r2v_agent import RoutedAgent
from r2v_agent.policy.prompts import FORMATS, Turn

TEXTWORLD = dataclasses.replace(FORMATS["textworld"], max_chars=260)


def _turns(n: int) -> list[Turn]:
    """A quest statement, then n - 1 played steps of 100-character observations, then the
    current step (no action yet)."""
    turns = [Turn("Quest: go east, take the key, open the chest." + "." * 55, "go east")]
    for i in range(1, n):
        turns.append(Turn(f"room {i}: " + "x" * 90, f"action {i}"))
    turns.append(Turn("the current room"))
    return turns


def test_without_the_log_dropped_steps_vanish() -> None:
    messages = TEXTWORLD.messages(_turns(6))
    text = json.dumps(messages)
    assert "action 1" not in text and "action 4" not in text  # dropped by the window
    assert messages[1]["content"].startswith("Quest:") and messages[2]["content"] == "go east"
    assert messages[-1] == {"role": "user", "content": "the current room"}


def test_the_log_names_the_dropped_actions_in_order_once() -> None:
    logged = dataclasses.replace(TEXTWORLD, action_log=True)
    plain = TEXTWORLD.messages(_turns(6))
    messages = logged.messages(_turns(6))
    assert len(messages) == len(plain)  # the same turns are kept; only the note is added
    note_turn = messages[3]["content"]
    assert note_turn.startswith(
        "(Your actions since the first step: action 1; action 2; action 3; action 4)\n\n"
    )
    assert note_turn.endswith(plain[3]["content"])
    assert json.dumps(messages).count("action 5") == 1  # kept turns are not logged again
    assert messages[2]["content"] == "go east"  # the first action stays a turn of its own
    assert messages[-1] == plain[-1]


def test_the_log_is_empty_when_nothing_is_dropped() -> None:
    logged = dataclasses.replace(TEXTWORLD, action_log=True)
    for n in (1, 2):  # the quest alone; the quest and one step that fits
        assert logged.messages(_turns(n)) == TEXTWORLD.messages(_turns(n))
    assert logged.messages([Turn("only the quest")]) == TEXTWORLD.messages([Turn("only the quest")])


def test_a_multiline_action_is_logged_as_its_first_line() -> None:
    shell = dataclasses.replace(FORMATS["terminalbench"], max_chars=200, action_log=True)
    turns = [
        Turn("task: fix the script", "cat run.sh"),
        Turn("o" * 150, "cat > a.py <<'EOF'\nprint('hi')\nEOF"),
        Turn("p" * 150, "y" * 200),
        Turn("now"),
    ]
    content = shell.messages(turns)[3]["content"]
    assert content.startswith(
        f"(Your actions since the first step: cat > a.py <<'EOF'; {'y' * 77}...)"
    )
    assert "print('hi')" not in content


def test_a_saved_agent_keeps_its_action_log_and_older_agents_have_none(tmp_path: Path) -> None:
    agent = RoutedAgent.from_pretrained("tiny-random", k=2)
    agent.action_log = True
    agent.save_pretrained(tmp_path / "agent")
    loaded = RoutedAgent.from_pretrained(tmp_path / "agent")
    assert loaded.action_log and loaded.format_of("textworld").action_log
    assert loaded.with_router(loaded.router).action_log

    shutil.copytree(tmp_path / "agent", tmp_path / "old")
    config_path = tmp_path / "old" / "config.json"
    config = json.loads(config_path.read_text())
    del config["action_log"]  # as saved before the setting existed
    config_path.write_text(json.dumps(config))
    old = RoutedAgent.from_pretrained(tmp_path / "old")
    assert not old.action_log and not old.format_of("textworld").action_log
