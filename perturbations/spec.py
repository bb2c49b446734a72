"""Spec strings: ``"flaky_tool(p=0.2)+truncate(max_chars=400,mode=middle)"`` -> a wrapper stack.

Parts are joined by ``+`` and applied left to right, so the first part wraps the env directly and
the last is outermost (here the flaky tool's error text is itself truncated). Arguments are
keyword-only Python literals; a bare word (``mode=middle``) is read as a string. ``""`` and
``"none"`` mean no perturbation.
"""

from __future__ import annotations

import ast
import inspect
from dataclasses import dataclass
from typing import Any

import gymnasium as gym

from perturbations.base import Perturbation, check_seed, fresh_seed
from perturbations.errors import PerturbationSpecError
from perturbations.registry import PERTURBATIONS

__all__ = ["PerturbationPart", "parse_spec", "make_stack", "stack_spec"]


@dataclass(frozen=True)
class PerturbationPart:
    """One parsed part of a spec: the registered ``name`` and its keyword arguments."""

    name: str
    kwargs: dict[str, Any]

    @property
    def cls(self) -> type[Perturbation]:
        return PERTURBATIONS[self.name]


def parse_spec(spec: str) -> list[PerturbationPart]:
    """Parse and validate a spec string; raise :class:`PerturbationSpecError` naming the bad part."""
    if not isinstance(spec, str):
        raise PerturbationSpecError(f"a perturbation spec is a str, got {type(spec).__name__}")
    text = spec.strip()
    if text in ("", "none", "clean"):
        return []
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError as exc:
        raise PerturbationSpecError(
            f"cannot parse perturbation spec {spec!r}: {exc.msg} at column {exc.offset}"
        ) from None
    parts = [_parse_part(node, text) for node in _flatten_plus(tree, text)]
    for part in parts:
        _check_arguments(part)
    return parts


def make_stack(
    env: gym.Env[str, str], spec: str | list[PerturbationPart], *, seed: int | None = 0
) -> gym.Env[str, str]:
    """Wrap ``env`` in the perturbations of ``spec``, all derived from one seed ``seed``.

    Each wrapper's stream depends on ``(seed, its position, the env's reset seed)``: the same
    env seed and perturbation seed reproduce the same episode exactly.
    """
    if isinstance(spec, str):
        parts = parse_spec(spec)
    elif isinstance(spec, list) and all(isinstance(p, PerturbationPart) for p in spec):
        parts = list(spec)
    else:
        raise PerturbationSpecError(
            "a perturbation spec is a str (e.g. 'flaky_tool(p=0.2)'; 'none' for no "
            f"perturbation) or a list of PerturbationPart, got {spec!r}"
        )
    base = check_seed(seed) if seed is not None else fresh_seed()
    for index, part in enumerate(parts):
        try:
            env = part.cls(env, **part.kwargs, seed=base, stack_index=index)
        except (TypeError, ValueError) as exc:
            raise PerturbationSpecError(f"perturbation {_render(part)}: {exc}") from None
    return env


def stack_spec(env: gym.Env[str, str]) -> str:
    """The spec string of the perturbations wrapped around ``env`` (innermost first)."""
    parts: list[str] = []
    current: Any = env
    while isinstance(current, gym.Wrapper):
        if isinstance(current, Perturbation):
            parts.append(current.spec_string)
        current = current.env
    return "+".join(reversed(parts)) or "none"


# ---------------------------------------------------------------------------------- parsing
def _flatten_plus(node: ast.expr, text: str) -> list[ast.expr]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _flatten_plus(node.left, text) + _flatten_plus(node.right, text)
    return [node]


def _parse_part(node: ast.expr, text: str) -> PerturbationPart:
    segment = ast.get_source_segment(text, node) or ast.dump(node)
    if isinstance(node, ast.Name):
        name, keywords = node.id, []
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        if node.args:
            raise PerturbationSpecError(
                f"in {segment!r}: arguments must be named (e.g. p=0.2), got a positional one"
            )
        name, keywords = node.func.id, node.keywords
    else:
        raise PerturbationSpecError(
            f"{segment!r} is not a perturbation; expected name(arg=value, ...) parts joined by '+'"
        )
    if name not in PERTURBATIONS:
        raise PerturbationSpecError(
            f"unknown perturbation {name!r} in {segment!r}; known: {', '.join(sorted(PERTURBATIONS))}"
        )
    kwargs: dict[str, Any] = {}
    for kw in keywords:
        if kw.arg is None:
            raise PerturbationSpecError(f"in {segment!r}: '**' is not allowed")
        if kw.arg in kwargs:
            raise PerturbationSpecError(f"in {segment!r}: argument {kw.arg!r} given twice")
        kwargs[kw.arg] = _literal(kw.value, text, segment, kw.arg)
    return PerturbationPart(name, kwargs)


def _literal(node: ast.expr, text: str, segment: str, arg: str) -> Any:
    if isinstance(node, ast.Name):  # bare word -> string (mode=middle)
        return {"True": True, "False": False, "None": None}.get(node.id, node.id)
    try:
        return ast.literal_eval(node)
    except ValueError:
        value = ast.get_source_segment(text, node)
        raise PerturbationSpecError(
            f"in {segment!r}: value {value!r} of {arg!r} is not a literal"
        ) from None


def _check_arguments(part: PerturbationPart) -> None:
    signature = inspect.signature(part.cls.__init__)
    allowed = [
        p.name
        for p in signature.parameters.values()
        if p.name not in ("self", "env", "seed", "stack_index")
        and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    ]
    for key in part.kwargs:
        if key not in allowed:
            raise PerturbationSpecError(
                f"{part.name} has no argument {key!r} (in {_render(part)}); "
                f"allowed: {', '.join(allowed) or 'none'}"
            )


def _render(part: PerturbationPart) -> str:
    return f"{part.name}({','.join(f'{k}={v!r}' for k, v in part.kwargs.items())})"
