"""Grading with EvalPlus's rules, done on the host from the outputs the sandbox reports.

EvalPlus compares inside the process that ran the solution, where the solution can tamper with
the comparison (an ``__eq__`` that always answers ``True``, or a walk up the stack to read the
expected values). Here the child only reports its outputs as plain data
(:mod:`r2v_envs.humaneval._runner`) and :func:`outputs_match` applies EvalPlus's own rules --
exact match, the float tolerance ``atol`` (``1e-6`` for float outputs when the task sets none),
``numpy.allclose`` with ``rtol=1e-7``, and the ``find_zero`` oracle -- with EvalPlus's expected
outputs and time limits (``max(min_time_limit, gt_time_limit_factor * reference time)``).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from r2v_envs.humaneval.sandbox import CallResult, RunResult, Sandbox

__all__ = ["decode", "outputs_match", "time_limits", "GradeReport", "grade_submission"]

#: EvalPlus's defaults (evalplus.config), used when evalplus is not importable.
MIN_TIME_LIMIT = 1.0
GT_TIME_LIMIT_FACTOR = 4.0


def decode(value: Any) -> Any:
    """Turn the runner's tagged JSON back into Python values (never executes anything)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((tag, body),) = value.items()
        if tag == "flat_list":
            return body
        if tag == "flat_tuple":
            return tuple(body)
        if tag == "list":
            return [decode(v) for v in body]
        if tag == "tuple":
            return tuple(decode(v) for v in body)
        if tag == "set":
            return {decode(v) for v in body}
        if tag == "frozenset":
            return frozenset(decode(v) for v in body)
        if tag == "dict":
            return {decode(k): decode(v) for k, v in body}
        if tag == "int":
            return int(body, 16)
        if tag == "complex":
            return complex(body[0], body[1])
        if tag == "bytes":
            return base64.b64decode(body)
    raise ValueError(f"malformed sandbox output {str(value)[:80]!r}")


def _is_floats(x: Any) -> bool:
    # evalplus.eval.is_floats
    if isinstance(x, float):
        return True
    if isinstance(x, list | tuple) and x:
        return all(isinstance(i, float) for i in x)
    if isinstance(x, np.ndarray):
        return x.dtype in (np.float64, np.float32)
    return False


def _poly(xs: list[float], x: float) -> float:
    # evalplus.eval._special_oracle._poly: the polynomial whose zero find_zero must return.
    return sum(coeff * x**i for i, coeff in enumerate(xs))


def outputs_match(
    out: Any, expected: Any, atol: float, entry_point: str, args: list[Any]
) -> tuple[bool, float]:
    """EvalPlus's comparison of one output; returns (match, the atol to use from now on).

    EvalPlus raises the tolerance to 1e-6 the first time it meets a float output in a task with
    ``atol == 0`` and keeps it for the task's later inputs; the second return value carries that.
    """
    try:
        if entry_point == "find_zero":
            return bool(abs(_poly(args[0], out)) <= atol), atol
        exact = out == expected
        if atol == 0 and _is_floats(expected):
            atol = 1e-6
        if not exact and atol != 0:
            if type(out) is not type(expected):
                return False, atol
            if isinstance(expected, list | tuple) and len(out) != len(expected):
                return False, atol
            return bool(np.allclose(out, expected, rtol=1e-07, atol=atol)), atol
        return bool(exact), atol
    except Exception:  # noqa: BLE001 - a malformed output is a wrong output
        return False, atol


def time_limits(reference_seconds: list[float]) -> list[float]:
    try:
        from evalplus.config import DEFAULT_GT_TIME_LIMIT_FACTOR, DEFAULT_MIN_TIME_LIMIT
    except ImportError:  # pragma: no cover
        DEFAULT_MIN_TIME_LIMIT, DEFAULT_GT_TIME_LIMIT_FACTOR = MIN_TIME_LIMIT, GT_TIME_LIMIT_FACTOR
    return [
        max(DEFAULT_MIN_TIME_LIMIT, DEFAULT_GT_TIME_LIMIT_FACTOR * t) for t in reference_seconds
    ]


@dataclass
class SuiteReport:
    """Result of one test suite (``base`` or ``plus``)."""

    passed: bool
    n_passed: int
    n_total: int
    first_failure: str = ""


@dataclass
class GradeReport:
    base: SuiteReport
    plus: SuiteReport | None
    run: RunResult | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def success(self) -> bool:
        return self.base.passed and (self.plus is None or self.plus.passed)


def _describe(call: CallResult, args: list[Any], expected: Any, entry_point: str) -> str:
    call_text = f"{entry_point}({', '.join(repr(a) for a in args)})"[:300]
    if call.status == "ok":
        try:
            got = repr(decode(call.output))[:200]
        except ValueError:
            got = "<malformed output>"
        return f"{call_text} returned {got}, expected {repr(expected)[:200]}"
    if call.status == "timeout":
        return f"{call_text} timed out"
    if call.status == "error":
        return f"{call_text} raised {call.error[:300]}"
    return f"{call_text}: the process died before returning"


class _Judge:
    """Compares each reported output with EvalPlus's expected value, in call order."""

    def __init__(self, inputs: list[Any], expected: list[Any], atol: float, entry_point: str):
        self.inputs, self.expected, self.atol, self.entry_point = (
            inputs,
            expected,
            atol,
            entry_point,
        )
        self.verdicts: dict[int, bool] = {}
        self.first_failure = ""

    def __call__(self, index: int, call: CallResult) -> bool:
        ok = False
        if call.status == "ok" and 0 <= index < len(self.expected):
            try:
                out = decode(call.output)
            except ValueError:
                pass
            else:
                ok, self.atol = outputs_match(
                    out, self.expected[index], self.atol, self.entry_point, self.inputs[index]
                )
        self.verdicts[index] = ok
        if not ok and not self.first_failure and 0 <= index < len(self.expected):
            self.first_failure = _describe(
                call, self.inputs[index], self.expected[index], self.entry_point
            )
        return ok

    def suite(self, start: int, stop: int, run: RunResult) -> SuiteReport:
        n_passed = 0
        for index in range(start, stop):
            # Calls reported after the watchdog's last look are judged here, still in order.
            ok = self.verdicts[index] if index in self.verdicts else self(index, run.calls[index])
            if not ok:
                return SuiteReport(False, n_passed, stop - start, self.first_failure)
            n_passed += 1
        return SuiteReport(True, n_passed, stop - start)


def grade_submission(
    sandbox: Sandbox,
    code: str,
    problem: dict[str, Any],
    expected: dict[str, Any],
    *,
    with_plus: bool = True,
) -> GradeReport:
    """Grade ``code`` on the task's base (and plus) inputs in one sandboxed run."""
    base_inputs = problem["base_input"]
    plus_inputs = problem["plus_input"] if with_plus else []
    limits = time_limits(
        list(expected["base_time"]) + (list(expected["plus_time"]) if with_plus else [])
    )
    inputs = base_inputs + plus_inputs
    wanted = list(expected["base"]) + (list(expected["plus"]) if with_plus else [])
    judge = _Judge(inputs, wanted, float(problem.get("atol", 0) or 0), problem["entry_point"])
    # Stops at the first wrong answer, so base and plus counts run up to the first failure.
    run = sandbox.run_calls(code, problem["entry_point"], inputs, limits, judge=judge)
    if run.load != "ok":
        reason = {"timeout": "defining the solution timed out", "crashed": "the process died"}.get(
            run.load, f"the solution raised on import: {run.error}"
        )
        failed = SuiteReport(False, 0, len(base_inputs), reason)
        plus = SuiteReport(False, 0, len(plus_inputs), reason) if with_plus else None
        return GradeReport(failed, plus, run)
    nb = len(base_inputs)
    base = judge.suite(0, nb, run)
    plus = judge.suite(nb, len(inputs), run) if with_plus else None
    return GradeReport(base, plus, run)
