"""The part of a task's ``docker-compose.yaml`` a TerminalBench backend needs.

Terminal-Bench 1.x describes every task's containers with compose: a ``client`` service (where
the agent's shell runs, usually built from the task's ``Dockerfile``) and, for multi-container
tasks, more services the client talks to by name. :func:`load_compose` reads the services'
``build`` (context, dockerfile), ``image``, ``command``, ``entrypoint``, ``environment`` and
``working_dir``; Terminal-Bench's own ``${T_BENCH_...}`` variables are filled in, and its log
``volumes``, ``container_name``, ``image`` names of built services and ``networks`` are
ignored (the backend names, connects and cleans up containers itself).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ComposeError", "Service", "load_compose", "COMPOSE_FILES", "CLIENT"]

COMPOSE_FILES = ("docker-compose.yaml", "docker-compose.yml", "compose.yaml", "compose.yml")
CLIENT = "client"
#: Terminal-Bench's harness variables; anything else resolves to its ``:-default`` or "".
TB_VARIABLES = {"T_BENCH_TEST_DIR": "/tests", "T_BENCH_CONTAINER_LOGS_PATH": "/logs"}
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


class ComposeError(ValueError):
    """A compose file the backends cannot follow; the message names the service and field."""


@dataclass(frozen=True)
class Service:
    name: str
    context: Path | None  #: build context (a folder of the task), None for an image service
    dockerfile: str = "Dockerfile"  #: relative to ``context``
    image: str | None = None  #: the image of a service without ``build``
    command: list[str] | str | None = None
    entrypoint: list[str] | str | None = None
    environment: dict[str, str] = field(default_factory=dict)
    working_dir: str | None = None

    @property
    def dockerfile_path(self) -> Path | None:
        return None if self.context is None else self.context / self.dockerfile


def _interpolate(value: Any) -> Any:
    if isinstance(value, str):

        def fill(match: re.Match[str]) -> str:
            name = match.group(1) or match.group(3)
            return TB_VARIABLES.get(name, match.group(2) or "")

        return _VARIABLE.sub(fill, value.replace("$$", "\0")).replace("\0", "$")
    if isinstance(value, list):
        return [_interpolate(v) for v in value]
    if isinstance(value, dict):
        return {k: _interpolate(v) for k, v in value.items()}
    return value


def load_compose(task_dir: Path) -> dict[str, Service] | None:
    """The services of the task's compose file (``client`` first), or None when it has none."""
    path = next((task_dir / n for n in COMPOSE_FILES if (task_dir / n).is_file()), None)
    if path is None:
        return None
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ComposeError(f"{path.name} is not valid YAML: {exc}") from None
    services = data.get("services") if isinstance(data, dict) else None
    if not isinstance(services, dict) or not services:
        raise ComposeError(f"{path.name} needs a 'services' mapping")
    if CLIENT not in services:
        raise ComposeError(
            f"{path.name} has no {CLIENT!r} service (the container the agent works in); "
            f"services: {', '.join(map(str, services))}"
        )
    out: dict[str, Service] = {}
    for name in [CLIENT, *(s for s in services if s != CLIENT)]:
        out[str(name)] = _service(task_dir, str(name), _interpolate(services[name] or {}), path)
    return out


def _service(task_dir: Path, name: str, spec: Any, path: Path) -> Service:
    where = f"{path.name}: service {name!r}"
    if not isinstance(spec, dict):
        raise ComposeError(f"{where} must be a mapping")
    build = spec.get("build")
    context: Path | None = None
    dockerfile = "Dockerfile"
    if build is not None:
        if isinstance(build, str):
            build = {"context": build}
        if not isinstance(build, dict):
            raise ComposeError(f"{where}: 'build' must be a path or a mapping")
        context = (task_dir / str(build.get("context") or ".")).resolve()
        if task_dir.resolve() not in [context, *context.parents]:
            raise ComposeError(f"{where}: build context {build.get('context')!r} leaves the task")
        dockerfile = str(build.get("dockerfile") or "Dockerfile")
        if not (context / dockerfile).is_file():
            raise ComposeError(f"{where}: no Dockerfile at {context.name}/{dockerfile}")
    image = spec.get("image")
    if context is None and not image:
        raise ComposeError(f"{where} needs 'build' or 'image'")
    environment = spec.get("environment") or {}
    if isinstance(environment, list):
        # A bare NAME would pass the host's value in: the host's environment stays out.
        pairs = [str(e).partition("=") for e in environment]
        environment = {k: v for k, sep, v in pairs if sep}
    if not isinstance(environment, dict):
        raise ComposeError(f"{where}: 'environment' must be a list or a mapping")
    return Service(
        name=name,
        context=context,
        dockerfile=dockerfile,
        image=None if context is not None else str(image),
        command=spec.get("command"),
        entrypoint=spec.get("entrypoint"),
        environment={str(k): "" if v is None else str(v) for k, v in environment.items()},
        working_dir=spec.get("working_dir"),
    )
