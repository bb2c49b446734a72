"""Checks a Z-machine story file before the interpreter sees it.

Jericho's interpreter (frotz) ends the whole Python process -- ``Fatal error: Story file read
error``, which nothing can catch -- when it is handed an empty, truncated or non-game file. So a
``game_file`` is checked here first, against the Z-machine standard's header (section 11): the
version byte, the declared file length and the checksum of everything past the 64-byte header.
A file that fails raises :class:`~r2v_envs.errors.GameFileError` naming the file and the check.
"""

from __future__ import annotations

import re
from pathlib import Path

from r2v_envs.errors import GameFileError

__all__ = ["check_story_file"]

_HEADER = 64
_EXTENSION = re.compile(r"\.z[1-8]$", re.IGNORECASE)


def _length_unit(version: int) -> int:
    """The file-length header word counts 2-, 4- or 8-byte units, by version."""
    return 2 if version <= 3 else 4 if version <= 5 else 8


def check_story_file(path: Path) -> None:
    """Raise :class:`GameFileError` unless ``path`` is a whole, uncorrupted Z-machine file."""
    if not _EXTENSION.search(path.name):
        raise GameFileError(
            f"game_file {str(path)!r}: not a Z-machine story file (.z1 to .z8); TextWorld games "
            "are compiled to .z8 with a .json of metadata beside them"
        )
    data = path.read_bytes()
    if len(data) < _HEADER:
        raise GameFileError(
            f"game_file {str(path)!r}: {len(data)} bytes, shorter than a Z-machine header "
            f"({_HEADER} bytes): empty or not a story file"
        )
    version = data[0]
    if not 1 <= version <= 8:
        raise GameFileError(
            f"game_file {str(path)!r}: header byte 0 is {version}, not a Z-machine version "
            "(1 to 8): not a story file"
        )
    declared = int.from_bytes(data[0x1A:0x1C], "big") * _length_unit(version)
    if declared == 0:  # very old story files leave the length (and checksum) out
        return
    if declared > len(data):
        raise GameFileError(
            f"game_file {str(path)!r}: the header declares {declared} bytes but the file has "
            f"{len(data)}: truncated"
        )
    expected = int.from_bytes(data[0x1C:0x1E], "big")
    actual = sum(data[_HEADER:declared]) & 0xFFFF
    if actual != expected:
        raise GameFileError(
            f"game_file {str(path)!r}: checksum {actual:#06x} does not match the header's "
            f"{expected:#06x}: corrupted"
        )
