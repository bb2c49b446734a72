"""TextWorld as a Gymnasium env: an adapter over ``textworld.start``.

TextWorld reports a cumulative score and a ``(state, score, done)`` triple; this adapter turns it
into Gymnasium's 5-tuple with the per-step score change as reward, ``terminated`` on win or loss and
``truncated`` at the step limit. Commands are sanitised before they reach the Z-machine, whose
interpreter hangs on control characters, crashes on some backslash escapes and mangles non-ASCII
text.
"""

from __future__ import annotations

import os
import re
import unicodedata
import warnings
from pathlib import Path
from typing import Any

from r2v_envs.core import StepOutcome, TextEnv, require_int
from r2v_envs.errors import GameFileError, MissingDependencyError, TaskNotFoundError
from r2v_envs.textworld.games import SUITES, GameSpec, ensure_game, split_seed
from r2v_envs.textworld.storyfile import check_story_file

__all__ = ["TextWorldEnv", "clean_feedback"]

_BANNER_CHARS = set(" _|\\/$<>")
_PRINTABLE = re.compile(r"^[\x20-\x7e]*$")
_STATUS_LINE = re.compile(r"^>\s.*-=.*=-\s*-?\d+/\d+\s*$")
_BLANK_RUNS = re.compile(r"\n{3,}")


def clean_feedback(text: str) -> str:
    """Drop the Z-machine's status bar and prompt (``>   -= Kitchen =-2/6``), TextWorld's
    ASCII-art banner, and runs of blank lines."""
    lines = [
        ln
        for ln in text.splitlines()
        if not _STATUS_LINE.match(ln) and not (ln.strip() and set(ln) <= _BANNER_CHARS)
    ]
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip()


class TextWorldEnv(TextEnv):
    """A generated TextWorld game per episode, chosen by the reset seed.

    Args:
        suite: ``"custom"``, ``"cooking"``, ``"coin_collector"`` or ``"treasure_hunter"``
            (see :mod:`r2v_envs.textworld.games`).
        difficulty: suite-specific level; ``None`` takes the suite's default.
        split: ``None`` (game seed = reset seed), ``"train"`` (even game seeds) or ``"test"`` (odd).
        cache_dir: where generated games are kept (default: ``$R2V_TEXTWORLD_CACHE`` or
            ``~/.cache/r2v/textworld``).
        max_episode_steps: step limit; reaching it sets ``truncated``.
        expert_hints: add ``info["expert_action"]``, the next command of an optimal plan from the
            *current* state (for :class:`~r2v_agent.teacher.OracleTeacher` only), and
            ``info["expert_plan_length"]``, the length of that plan (the training pipeline's
            ground truth for progress).
        show_commands: end every observation with the game's admissible commands
            (``"Available commands: close door, go north, ..."``), as text-game agents commonly
            get them -- a stated setting of a benchmark (it is in the env's kwargs, so results
            name it), not the default. Perturbations act on the whole text, list included.

    ``reset(options=...)`` accepts ``task_id`` (``"cooking/d2/s17"``) or ``game_file`` (any
    TextWorld ``.z8``/``.ulx`` game; plain Z-machine games without TextWorld's ``.json`` play
    without admissible actions or expert hints).
    """

    metadata = {**TextEnv.metadata, "family": "textworld"}

    max_observation_chars = 8_192
    max_action_chars = 256

    def __init__(
        self,
        suite: str = "custom",
        difficulty: int | None = None,
        *,
        split: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        max_episode_steps: int = 50,
        expert_hints: bool = False,
        show_commands: bool = False,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(
            max_episode_steps=max_episode_steps, expert_hints=expert_hints, render_mode=render_mode
        )
        if suite not in SUITES:
            raise ValueError(f"unknown TextWorld suite {suite!r}; choose from {sorted(SUITES)}")
        self.suite = suite
        self.difficulty = (
            SUITES[suite].default_difficulty
            if difficulty is None
            else require_int("TextWorldEnv", "difficulty", difficulty, minimum=1)
        )
        # Validate suite/difficulty now rather than at the first reset.
        GameSpec(suite, self.difficulty, 0)
        split_seed(0, split)
        self.split = split
        self.show_commands = bool(show_commands)
        self.cache_dir = cache_dir
        self._game: Any = None
        self._game_path: Path | None = None
        self._has_json = False
        self._state: Any = None

    # ----------------------------------------------------------------------------- hooks
    def _reset_task(
        self, task_seed: int, options: dict[str, Any]
    ) -> tuple[str, str, float, dict[str, Any]]:
        if "game_file" in options:
            path = Path(options["game_file"]).expanduser()
            if not path.is_file():
                raise TaskNotFoundError(f"game_file {str(path)!r} does not exist")
            check_story_file(path)  # a bad file would end the process inside the interpreter
            task_id = f"file:{path.name}"
        else:
            if "task_id" in options:
                spec = GameSpec.from_task_id(str(options["task_id"]))
            else:
                spec = GameSpec(self.suite, self.difficulty, split_seed(task_seed, self.split))
            path = ensure_game(spec, self.cache_dir)
            task_id = spec.task_id
        self._load(path)
        self._state = self._game.reset()
        info = self._infos()
        return (
            self._with_commands(clean_feedback(self._state.feedback or ""), info),
            task_id,
            self._max_of(self._state),
            info,
        )

    def _normalise_action(self, action: str) -> str:
        # Map accents and fancy punctuation to ASCII so "pick up the crème" still parses.
        folded = unicodedata.normalize("NFKD", action).encode("ascii", "ignore").decode("ascii")
        return " ".join(folded.split(" ")).strip()

    def _validate_action(self, action: str) -> str | None:
        problem = super()._validate_action(action)
        if problem is not None:
            return problem
        if "\n" in action or "\r" in action:
            return "Invalid action: send one command per step (the action contains a line break)."
        if not _PRINTABLE.match(action):
            return "Invalid action: the command contains control characters."
        if "\\" in action:  # the Z-machine front end (dumb-frotz) reads "\" as an escape
            return "Invalid action: backslashes are not allowed in commands."
        return None

    def _current_info(self) -> dict[str, Any]:
        return self._infos()

    def _step_task(self, action: str) -> StepOutcome:
        state, score, done = self._game.step(action)
        self._state = state
        won = bool(getattr(state, "won", False))
        lost = bool(getattr(state, "lost", False))
        info = self._infos()
        return StepOutcome(
            observation=self._with_commands(clean_feedback(state.feedback or ""), info),
            score=float(score or 0.0),
            terminated=bool(done) and (won or lost or not self._has_json),
            success=won,
            info=info,
        )

    def _with_commands(self, observation: str, info: dict[str, Any]) -> str:
        commands = info.get("admissible_actions")
        if not self.show_commands or not commands:
            return observation
        return f"{observation}\n\nAvailable commands: {', '.join(commands)}"

    # ----------------------------------------------------------------------------- internals
    def _load(self, path: Path) -> None:
        try:
            import textworld
        except ImportError as exc:  # pragma: no cover
            raise MissingDependencyError(
                "TextWorld envs need textworld: pip install 'r2v-agent[textworld]'"
            ) from exc
        if self._game is not None and path == self._game_path:
            return  # same game as last episode: reset() is enough
        self.close()
        self._has_json = path.with_suffix(".json").is_file()
        if self._has_json:
            request = textworld.EnvInfos(
                admissible_commands=True,
                policy_commands=self.expert_hints,
                max_score=True,
                won=True,
                lost=True,
                moves=True,
            )
        else:
            request = textworld.EnvInfos(max_score=True, moves=True)
        with warnings.catch_warnings():
            # Jericho warns that it does not know generated games; TextWorld tracks them itself.
            warnings.filterwarnings("ignore", message=".*is not fully supported.*")
            self._game = textworld.start(str(path), request_infos=request)
        self._game_path = path
        # Without the .json, textworld plays the file through Jericho alone (no wrappers).
        if not self._has_json and not self._game._jericho.is_fully_supported:
            # Neither TextWorld's metadata nor Jericho's knowledge of the game: it would play with
            # a score of 0 and never report its win.
            self.close()
            raise GameFileError(
                f"game_file {str(path)!r}: no TextWorld metadata ({path.with_suffix('.json').name} "
                "beside it) and Jericho does not know the game, so its score and win cannot be "
                "read; keep the .json that tw-make wrote next to the .z8"
            )

    @staticmethod
    def _max_of(state: Any) -> float:
        return float(getattr(state, "max_score", None) or 0.0)

    def _infos(self) -> dict[str, Any]:
        state = self._state
        info: dict[str, Any] = {
            "won": bool(getattr(state, "won", False)),
            "lost": bool(getattr(state, "lost", False)),
            "moves": getattr(state, "moves", None),
        }
        admissible = getattr(state, "admissible_commands", None) if self._has_json else None
        info["admissible_actions"] = sorted(admissible) if admissible is not None else None
        if self.expert_hints:
            plan = getattr(state, "policy_commands", None) if self._has_json else None
            info["expert_action"] = plan[0] if plan else None
            # Ground truth for "did this step make progress?" (training labels, never features).
            info["expert_plan_length"] = len(plan) if plan is not None else None
        return info

    def close(self) -> None:
        if self._game is not None:
            self._game.close()
        self._game = None
        self._game_path = None
        super().close()
