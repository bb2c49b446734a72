"""The contract every R2V environment shares.

* :class:`TextSpace` -- a text space that accepts *any* ``str`` up to its length (Gymnasium's
  ``Text`` only accepts its alphanumeric charset) and vectorises through shared memory by code
  point, so ``gym.make_vec(..., vectorization_mode="async")`` works with real game text.
* :class:`TextEnv` -- the base class: seeding, the step limit, action validation and the info keys
  of DESIGN §3 (``task_id``, ``success``, ``score``, ``max_score``, ``tool_error``,
  ``perturbations``, and ``family``: the env family a subclass declares in its ``metadata``, which
  tells an agent how to prompt it). Subclasses implement :meth:`TextEnv._reset_task` and
  :meth:`TextEnv._step_task` only.
"""

from __future__ import annotations

import string
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, SupportsFloat, overload

import gymnasium as gym
import numpy as np
from gymnasium.vector.utils import shared_memory as _shm

from r2v_envs.errors import InvalidActionError

__all__ = [
    "TextSpace",
    "SharedTextBatch",
    "TextEnv",
    "StepOutcome",
    "StepBudget",
    "INFO_KEYS",
    "fit_text",
    "require_int",
]

#: Info keys every env fills on reset and on every step.
INFO_KEYS: tuple[str, ...] = (
    "task_id",
    "success",
    "score",
    "max_score",
    "tool_error",
    "perturbations",
    "family",
)

_SAMPLE_CHARSET = string.ascii_letters + string.digits + string.punctuation + " \n"


class TextSpace(gym.spaces.Text):
    """A ``Text`` space whose ``contains`` accepts any ``str`` of at most ``max_length`` chars.

    ``sample()`` draws printable ASCII (letters, digits, punctuation, space, newline), which is
    what random agents and ``check_env`` need.
    """

    def __init__(self, max_length: int, *, min_length: int = 0, seed: int | None = None):
        super().__init__(
            max_length=max_length,
            min_length=min_length,
            charset=_SAMPLE_CHARSET,
            seed=seed,
        )

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length

    def __repr__(self) -> str:
        return f"TextSpace(max_length={self.max_length})"

    def __eq__(self, other: Any) -> bool:
        return (
            isinstance(other, TextSpace)
            and other.max_length == self.max_length
            and other.min_length == self.min_length
        )

    __hash__ = gym.spaces.Text.__hash__


# Async vector envs move observations through shared memory. Gymnasium encodes Text by charset
# index, which cannot carry arbitrary text; TextSpace stores Unicode code points instead (0 = end).
@_shm.create_shared_memory.register(TextSpace)
def _create_textspace_memory(space: TextSpace, n: int = 1, ctx: Any = None) -> Any:
    import multiprocessing as mp

    return (ctx or mp).Array(np.dtype(np.int32).char, n * space.max_length)


@_shm.write_to_shared_memory.register(TextSpace)
def _write_textspace_memory(space: TextSpace, index: int, value: str, shared_memory: Any) -> None:
    size = space.max_length
    dest = np.frombuffer(shared_memory.get_obj(), dtype=np.int32)
    codes = np.zeros(size, dtype=np.int32)
    if value:
        codes[: len(value)] = np.frombuffer(value[:size].encode("utf-32-le"), dtype=np.int32)
    np.copyto(dest[index * size : (index + 1) * size], codes)


class SharedTextBatch(Sequence[str]):
    """A live, read-only view of a batch of texts in shared memory.

    ``AsyncVectorEnv`` reads its observation buffer once and expects a view that follows later
    writes (true of NumPy arrays, not of Gymnasium's own ``Text`` decoding, which snapshots).
    Indexing decodes the current contents; ``copy.deepcopy`` -- which the vector env applies by
    default -- returns a plain ``tuple`` of ``str``.
    """

    def __init__(self, shared_memory: Any, n: int, max_length: int):
        self._data = np.frombuffer(shared_memory.get_obj(), dtype=np.int32).reshape(n, max_length)

    def __len__(self) -> int:
        return self._data.shape[0]

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[str, ...]: ...
    def __getitem__(self, index: int | slice) -> str | tuple[str, ...]:
        if isinstance(index, slice):
            return tuple(self[i] for i in range(*index.indices(len(self))))
        row = self._data[index]
        zeros = np.flatnonzero(row == 0)
        end = int(zeros[0]) if zeros.size else len(row)
        return row[:end].tobytes().decode("utf-32-le")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and tuple(self) == tuple(other)

    __hash__ = None  # type: ignore[assignment]

    def __deepcopy__(self, memo: dict[int, Any]) -> tuple[str, ...]:
        return tuple(self)

    def __repr__(self) -> str:
        return f"SharedTextBatch({tuple(self)!r})"


@_shm.read_from_shared_memory.register(TextSpace)
def _read_textspace_memory(space: TextSpace, shared_memory: Any, n: int = 1) -> SharedTextBatch:
    return SharedTextBatch(shared_memory, n, space.max_length)


def require_int(owner: str, name: str, value: Any, *, minimum: int) -> int:
    """``value`` as an integer >= ``minimum``. Floats (2.7), bools and strings are refused --
    never rounded -- with a ``ValueError`` naming ``owner`` and the argument."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{owner}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def fit_text(text: str, max_chars: int, marker: str = "\n[... output truncated ...]") -> str:
    """Cap ``text`` at ``max_chars`` characters, ending with a visible marker when cut."""
    if len(text) <= max_chars:
        return text
    keep = max(0, max_chars - len(marker))
    return (text[:keep] + marker)[:max_chars]


@dataclass
class StepOutcome:
    """What a subclass reports for one action; the base class turns it into the 5-tuple."""

    observation: str
    score: float
    terminated: bool = False
    success: bool = False
    tool_error: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    truncated: bool = False  #: ended by a time limit of the task itself


class TextEnv(gym.Env[str, str]):
    """Base class of the R2V text environments.

    Subclasses implement two hooks:

    * ``_reset_task(task_seed, options) -> (observation, task_id, max_score, extra_info)``
    * ``_step_task(action) -> StepOutcome`` with the *cumulative* task score;

    and may override :meth:`_validate_action` for env-specific checks. The base class turns the
    cumulative score into a per-step reward, enforces the step limit (``truncated``), fills the
    shared info keys and caps observations at ``observation_space.max_length``.
    """

    #: ``family`` names the prompt family (textworld, humaneval, terminalbench) of the env's
    #: tasks; it is reported as ``info["family"]``. ``None``: an env no family fits.
    metadata: dict[str, Any] = {"render_modes": ["ansi", "human"], "family": None}

    #: Observation and action length caps (characters); subclasses may change them.
    max_observation_chars: int = 16_384
    max_action_chars: int = 4_096

    def __init__(
        self,
        *,
        max_episode_steps: int = 50,
        expert_hints: bool = False,
        render_mode: str | None = None,
    ) -> None:
        max_episode_steps = require_int(
            type(self).__name__, "max_episode_steps", max_episode_steps, minimum=1
        )
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode={render_mode!r} is not one of {self.metadata['render_modes']}"
            )
        self.max_episode_steps = max_episode_steps
        self.expert_hints = bool(expert_hints)
        self.render_mode = render_mode
        self.observation_space = TextSpace(self.max_observation_chars)
        self.action_space = TextSpace(self.max_action_chars)
        self.elapsed_steps = 0
        self._score = 0.0
        self._max_score = 0.0
        self._task_id = ""
        self._done = False
        self._last_obs = ""

    # ----------------------------------------------------------------------------- hooks
    @abstractmethod
    def _reset_task(
        self, task_seed: int, options: dict[str, Any]
    ) -> tuple[str, str, float, dict[str, Any]]:
        """Start the task chosen by ``task_seed`` (or ``options``)."""

    @abstractmethod
    def _step_task(self, action: str) -> StepOutcome:
        """Apply a validated action to the task."""

    def _validate_action(self, action: str) -> str | None:
        """Return an explanation if ``action`` is malformed for this env, else ``None``."""
        if not action.strip():
            return "Invalid action: the action is empty."
        if len(action) > self.max_action_chars:
            return (
                f"Invalid action: {len(action)} characters, more than the limit of "
                f"{self.max_action_chars}."
            )
        if "\x00" in action:  # a shell, a file or an interpreter would cut or drop it silently
            return f"Invalid action: a NUL character at position {action.index(chr(0))}."
        try:
            action.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate, e.g. "\ud800"
            return f"Invalid action: not valid Unicode text at position {exc.start}."
        return None

    def _current_info(self) -> dict[str, Any]:
        """Env-specific info keys for the unchanged state (reported after an invalid action)."""
        return {}

    def _normalise_action(self, action: str) -> str:
        """Env-specific clean-up applied before validation (default: none)."""
        return action

    # ----------------------------------------------------------------------------- gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        options = dict(options or {})
        # The task is a function of the reset seed alone, so the same seed replays the same task.
        task_seed = int(seed) if seed is not None else int(self.np_random.integers(0, 2**31 - 1))
        obs, task_id, max_score, extra = self._reset_task(task_seed, options)
        self.elapsed_steps = 0
        self._score = 0.0
        self._max_score = float(max_score)
        self._task_id = task_id
        self._done = False
        info = self._base_info(success=False, tool_error=False)
        info.update(extra)
        return self._emit(obs), info

    def step(self, action: str) -> tuple[str, SupportsFloat, bool, bool, dict[str, Any]]:
        if not isinstance(action, str):
            raise InvalidActionError(
                f"actions are str, got {type(action).__name__}: {action!r:.80}"
            )
        if self._done:
            raise RuntimeError("step() called after the episode ended; call reset() first")
        self.elapsed_steps += 1
        action = self._normalise_action(action)
        problem = self._validate_action(action)
        if problem is not None:
            info = self._base_info(success=False, tool_error=False)
            info.update(self._current_info())
            info["invalid_action"] = True
            truncated = self.elapsed_steps >= self.max_episode_steps
            self._done = truncated
            return self._emit(problem), 0.0, False, truncated, info

        outcome = self._step_task(action)
        reward = float(outcome.score) - self._score
        self._score = float(outcome.score)
        truncated = outcome.truncated or (
            not outcome.terminated and self.elapsed_steps >= self.max_episode_steps
        )
        self._done = outcome.terminated or truncated
        info = self._base_info(success=outcome.success, tool_error=outcome.tool_error)
        info["invalid_action"] = False
        info.update(outcome.info)
        return self._emit(outcome.observation), reward, outcome.terminated, truncated, info

    def consume_step(self) -> tuple[float, bool, dict[str, Any]]:
        """Spend one step of the budget without acting (a tool call that never arrived).

        Used by perturbations such as :class:`perturbations.FlakyTool`, so a failed call counts
        against the same limit as a real one. Returns ``(reward, truncated, info)``: when this
        step exhausts the budget the episode is truncated and the env's end-of-budget handling
        runs (:meth:`_on_step_limit`; TerminalBench grades the workspace there), so the final
        ``success``/``score`` are reported as after any last step.
        """
        if self._done:
            raise RuntimeError("step() called after the episode ended; call reset() first")
        self.elapsed_steps += 1
        truncated = self.elapsed_steps >= self.max_episode_steps
        self._done = truncated
        reward, success, extra = 0.0, False, self._current_info()
        if truncated:
            final = self._on_step_limit()
            if final is not None:
                reward = float(final.score) - self._score
                self._score = float(final.score)
                success, extra = final.success, final.info
        info = self._base_info(success=success, tool_error=True)
        info.update(extra)
        return reward, truncated, info

    def _on_step_limit(self) -> StepOutcome | None:
        """The final outcome when a spent step (not an action) exhausts the budget; ``None``
        keeps the state as it is (the default). Envs graded at the end override it."""
        return None

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return self._last_obs
        if self.render_mode == "human":
            print(self._last_obs)
        return None

    # ----------------------------------------------------------------------------- helpers
    @property
    def task_id(self) -> str:
        return self._task_id

    def _base_info(self, *, success: bool, tool_error: bool) -> dict[str, Any]:
        return {
            "task_id": self._task_id,
            "success": bool(success),
            "score": self._score,
            "max_score": self._max_score,
            "tool_error": bool(tool_error),
            "perturbations": [],
            "family": self.metadata.get("family"),
            "elapsed_steps": self.elapsed_steps,
            "max_episode_steps": self.max_episode_steps,
        }

    def _emit(self, observation: str) -> str:
        self._last_obs = fit_text(observation, self.max_observation_chars)
        return self._last_obs


class StepBudget(gym.Wrapper[str, str, str, str], gym.utils.RecordConstructorArgs):
    """Makes the step limit given to ``gym.make`` the env's own, single budget.

    ``gym.make(id, max_episode_steps=N)`` wraps the env in Gymnasium's ``TimeLimit(N)``, whose
    counter the env never sees: a limit above the env's default would not raise it, and a step
    spent outside ``TimeLimit`` (a flaky tool call, :meth:`TextEnv.consume_step`) would not count
    against ``N``. Every R2V id is registered with this wrapper right outside ``TimeLimit``: it
    hands ``N`` to the env, whose counter -- real steps and spent ones alike -- then ends the
    episode at ``N`` (``TimeLimit`` counts only the real steps, so it never ends one earlier).
    Without ``max_episode_steps`` the env keeps its own limit (its kwarg or its default).
    """

    def __init__(self, env: gym.Env[str, str]) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        super().__init__(env)
        limit = _time_limit_of(env)
        base = env.unwrapped
        if limit is not None and isinstance(base, TextEnv):
            base.max_episode_steps = limit


def _time_limit_of(env: gym.Env[Any, Any]) -> int | None:
    """The ``max_episode_steps`` of the outermost ``TimeLimit`` in ``env``'s wrapper chain."""
    while isinstance(env, gym.Wrapper):
        if isinstance(env, gym.wrappers.TimeLimit):
            return int(env._max_episode_steps)
        env = env.env
    return None
