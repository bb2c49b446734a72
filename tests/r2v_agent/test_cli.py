"""The ``r2v`` command line: every subcommand documents itself, bad inputs exit 2 in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from r2v_agent.cli import main

SUBCOMMANDS = [
    ["pipeline"],
    ["collect"],
    ["report"],
    ["train"],
    ["train", "bc"],
    ["config"],
    ["eval"],
]


@pytest.mark.parametrize("command", SUBCOMMANDS, ids=" ".join)
def test_every_subcommand_has_help(command: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as caught:
        main([*command, "--help"])
    assert caught.value.code == 0
    assert "usage: r2v" in capsys.readouterr().out


def test_eval_takes_the_runner_options(capsys: pytest.CaptureFixture) -> None:
    """``r2v eval --help`` used to fail with "unrecognized arguments: --help"."""
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    text = capsys.readouterr().out
    for option in ("--agent", "--methods", "--sweep", "--shares", "--seeds", "--out", "--device"):
        assert option in text


@pytest.mark.parametrize("command", [["pipeline"], ["train", "bc"], ["collect"]], ids=" ".join)
def test_missing_or_folder_config_is_one_line(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    for config, message in ((tmp_path / "nope.yaml", "does not exist"), (tmp_path, "a folder")):
        assert main([*command, "--config", str(config)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("r2v: error: config") and message in err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
