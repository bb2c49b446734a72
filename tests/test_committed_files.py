"""Committed files carry no absolute paths of the machine they were made on."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# A quoted absolute path into a home, a work tree or a temporary folder.
_MACHINE_PATH = re.compile(r"""["'](/(?:work/|root/|Users/|home/\w+/|tmp/pytest)[^"']*)["']""")


def test_no_committed_text_file_names_a_machine_path() -> None:
    try:
        listed = subprocess.run(
            ["git", "ls-files", "benchmarks", "README.md", "examples"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    offenders = []
    for name in listed:
        path = ROOT / name
        if path.suffix not in (".json", ".jsonl", ".md", ".csv", ".yaml", ".py"):
            continue
        for match in _MACHINE_PATH.finditer(path.read_text(errors="replace")):
            offenders.append(f"{name}: {match.group(1)}")
    assert not offenders, offenders[:10]
