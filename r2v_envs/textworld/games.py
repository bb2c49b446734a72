"""Offline TextWorld game generation with an on-disk cache.

A game is named by a :class:`GameSpec` -- suite, difficulty and seed -- whose ``task_id`` reads
``"cooking/d2/s17"``. :func:`ensure_game` generates it once with TextWorld's own generator
(``textworld.make`` for the ``custom`` suite, ``textworld.challenges`` for the others) and caches
the compiled ``.z8`` and its ``.json`` under :func:`default_cache_dir`. Generation is guarded by a
file lock and publishes files by atomic rename, so two processes asking for the same game (for
example the workers of an async vector env) never see or leave a half-written game.

Suites and difficulty
---------------------
=================  ==========  ============================================================
suite              difficulty  meaning
=================  ==========  ============================================================
custom             1-10        ``2+d`` rooms, ``4+2d`` objects, a quest of ``d+1`` actions
cooking            1-4         recipe size / ingredients to find / rooms / open, cut, cook, drop
coin_collector     1-300       TextWorld's coin-collector level
treasure_hunter    1-30        TextWorld's treasure-hunter level
=================  ==========  ============================================================
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import logging
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r2v_envs.errors import GameGenerationError, MissingDependencyError, TaskNotFoundError

__all__ = [
    "GameSpec",
    "SUITES",
    "Suite",
    "default_cache_dir",
    "ensure_game",
    "split_seed",
]

logger = logging.getLogger(__name__)

#: Environment variable that overrides the cache directory.
CACHE_ENV_VAR = "R2V_TEXTWORLD_CACHE"


@dataclass(frozen=True)
class Suite:
    """A family of TextWorld games: which generator, and what ``difficulty`` means."""

    name: str
    challenge: str | None  # textworld.challenges name; None = textworld.make (custom)
    difficulties: range
    default_difficulty: int
    settings: Callable[[int, int], dict[str, Any]]  # (difficulty, seed) -> generator settings


def _custom_settings(difficulty: int, seed: int) -> dict[str, Any]:
    return {
        "nb_rooms": 2 + difficulty,
        "nb_objects": 4 + 2 * difficulty,
        "quest_length": difficulty + 1,
    }


_COOKING_LEVELS: dict[int, dict[str, Any]] = {
    1: {"recipe": 1, "take": 1, "go": 1},
    2: {"recipe": 2, "take": 1, "go": 6, "open": True, "cut": True},
    3: {"recipe": 3, "take": 2, "go": 6, "open": True, "cook": True, "cut": True},
    4: {"recipe": 3, "take": 3, "go": 9, "open": True, "cook": True, "cut": True, "drop": True},
}


def _cooking_settings(difficulty: int, seed: int) -> dict[str, Any]:
    base = {"open": False, "cook": False, "cut": False, "drop": False, "split": None}
    # recipe_seed > 0 makes TextWorld sample a recipe, so games differ beyond their layout.
    return {**base, **_COOKING_LEVELS[difficulty], "recipe_seed": seed + 1}


def _level_settings(difficulty: int, seed: int) -> dict[str, Any]:
    return {"level": difficulty}


SUITES: dict[str, Suite] = {
    "custom": Suite("custom", None, range(1, 11), 3, _custom_settings),
    "cooking": Suite("cooking", "tw-cooking", range(1, 5), 2, _cooking_settings),
    "coin_collector": Suite(
        "coin_collector", "tw-coin_collector", range(1, 301), 5, _level_settings
    ),
    "treasure_hunter": Suite(
        "treasure_hunter", "tw-treasure_hunter", range(1, 31), 5, _level_settings
    ),
}

_TASK_ID = re.compile(r"^(?P<suite>[a-z_]+)/d(?P<difficulty>\d+)/s(?P<seed>\d+)$")


@dataclass(frozen=True)
class GameSpec:
    """One generated game: ``suite``, ``difficulty`` and generator ``seed``."""

    suite: str
    difficulty: int
    seed: int

    def __post_init__(self) -> None:
        if self.suite not in SUITES:
            raise ValueError(
                f"unknown TextWorld suite {self.suite!r}; choose from {sorted(SUITES)}"
            )
        allowed = SUITES[self.suite].difficulties
        if self.difficulty not in allowed:
            raise ValueError(
                f"difficulty={self.difficulty!r} is out of range for suite {self.suite!r} "
                f"({allowed.start}-{allowed.stop - 1})"
            )
        if self.seed < 0:
            raise ValueError(f"game seed must be >= 0, got {self.seed!r}")

    @property
    def task_id(self) -> str:
        return f"{self.suite}/d{self.difficulty}/s{self.seed}"

    @classmethod
    def from_task_id(cls, task_id: str) -> GameSpec:
        match = _TASK_ID.match(task_id)
        if match is None:
            raise TaskNotFoundError(
                f"task_id {task_id!r} is not of the form '<suite>/d<difficulty>/s<seed>', "
                "e.g. 'cooking/d2/s17'"
            )
        return cls(match["suite"], int(match["difficulty"]), int(match["seed"]))


def split_seed(index: int, split: str | None) -> int:
    """Map a reset seed to a game seed for a split: ``train`` = even seeds, ``test`` = odd.

    The mapping is fixed forever so train and test games never overlap across versions.
    """
    if split is None:
        return index
    if split == "train":
        return 2 * index
    if split == "test":
        return 2 * index + 1
    raise ValueError(f"split must be None, 'train' or 'test', got {split!r}")


def default_cache_dir() -> Path:
    """``$R2V_TEXTWORLD_CACHE``, else ``$XDG_CACHE_HOME/r2v/textworld`` (``~/.cache/...``)."""
    override = os.environ.get(CACHE_ENV_VAR)
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "r2v" / "textworld"


def _game_dir(cache_dir: Path) -> Path:
    import textworld

    # Generator output can change between TextWorld releases; never mix them in one folder.
    return cache_dir / f"textworld-{textworld.__version__}"


def ensure_game(spec: GameSpec, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the path of the compiled game for ``spec``, generating it on first use."""
    try:
        import textworld  # noqa: F401
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise MissingDependencyError(
            "TextWorld envs need textworld: pip install 'r2v-agent[textworld]'"
        ) from exc
    root = _game_dir(Path(cache_dir) if cache_dir is not None else default_cache_dir())
    target = root / spec.suite / f"d{spec.difficulty}" / f"s{spec.seed}.z8"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.with_suffix(".lock")):
        if target.exists():  # another process finished it while we waited
            return target
        logger.info("generating TextWorld game %s into %s", spec.task_id, target)
        _generate(spec, target)
    return target


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


_ENVIRON_LOCK = threading.Lock()


@contextlib.contextmanager
def _home(path: Path) -> Iterator[None]:
    with _ENVIRON_LOCK:
        old = os.environ.get("HOME")
        os.environ["HOME"] = str(path)
        try:
            yield
        finally:
            if old is None:
                os.environ.pop("HOME", None)
            else:
                os.environ["HOME"] = old


def _generate(spec: GameSpec, target: Path) -> None:
    import textworld
    import textworld.challenges
    import textworld.generator
    from textworld.generator.chaining import QuestGenerationError

    suite = SUITES[spec.suite]
    settings = suite.settings(spec.difficulty, spec.seed)
    workdir = Path(tempfile.mkdtemp(prefix=".gen-", dir=target.parent))
    try:
        options = textworld.GameOptions()
        options.seeds = spec.seed
        options.path = str(workdir / "game.z8")
        options.force_recompile = True
        # TextWorld prints progress from its compiler, and Inform 7 writes an ``Inform/`` folder
        # into $HOME: keep library output clean and the user's home untouched.
        with contextlib.redirect_stdout(io.StringIO()), _home(workdir):
            if suite.challenge is None:
                options.nb_rooms = settings["nb_rooms"]
                options.nb_objects = settings["nb_objects"]
                length = settings["quest_length"]
                options.chaining.min_length = length
                options.chaining.max_length = length
                options.chaining.max_depth = length
                game_file, _ = textworld.make(options)
            else:
                _, make, _ = textworld.challenges.CHALLENGES[suite.challenge]
                game = make(settings=settings, options=options)
                game_file = textworld.generator.compile_game(game, options)
        produced = Path(game_file)
        # Publish the .json first: the .z8 appearing is the signal that the game is complete.
        os.replace(produced.with_suffix(".json"), target.with_suffix(".json"))
        os.replace(produced, target)
    except QuestGenerationError as exc:
        raise GameGenerationError(
            f"TextWorld found no quest for {spec.task_id} with settings {settings}: {exc}"
        ) from exc
    except (OSError, RuntimeError, ValueError, AssertionError) as exc:
        raise GameGenerationError(f"could not generate {spec.task_id}: {exc}") from exc
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
