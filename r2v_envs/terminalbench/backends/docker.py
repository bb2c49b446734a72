"""The docker backend: the task's own Dockerfile(s), built and run by any Docker-compatible daemon.

* **Images.** Every ``FROM`` of a task (Terminal-Bench's ``ghcr.io/laude-institute/t-bench/...``
  images, ``python:3.x``, ``ubuntu:24.04``, ...) is rewritten to one local base image
  (``r2v-tb-base:latest`` by default; ``scripts/build_tb_base_image.sh`` builds it offline:
  Debian with python3, pip, venv and pytest). Builds use the classic builder, so here-documents
  and ``COPY --chmod`` are rendered into context files and a ``chmod`` step; a build may reach
  the package registries the host reaches (``RUN apt-get``/``pip install``), a failed build
  raises :class:`TaskSetupError` naming the task, the service and the Dockerfile line.
* **Containers.** A single-container task runs one container with ``network_mode="none"``. A
  compose task with more services runs each service in its own container, all sharing one
  private network namespace that has only a loopback interface (so no container can reach the
  host or the outside); each service's name resolves to 127.0.0.1, and the agent's shell runs in
  the ``client`` container. Memory and process limits apply to every container; the shell
  protocol is the local backend's, over the client's attached stdin.
* **Clean-up.** Every container of an episode carries a per-backend label and is removed on
  ``close()``, after a failed start and on an interruption (``KeyboardInterrupt``) during one.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import select
import shutil
import socket
import tarfile
import tempfile
import uuid
from pathlib import Path
from typing import Any

from r2v_envs.errors import MissingDependencyError
from r2v_envs.terminalbench.backends.base import (
    Backend,
    ShellStream,
    TaskSetupError,
)
from r2v_envs.terminalbench.compose import CLIENT, Service
from r2v_envs.terminalbench.dockerfile import (
    DockerfileError,
    Instruction,
    parse_dockerfile,
    render_for_classic_builder,
)
from r2v_envs.terminalbench.tasks import Task

__all__ = ["DockerBackend", "DEFAULT_BASE_IMAGE", "LABEL", "rewrite_dockerfile"]

DEFAULT_BASE_IMAGE = "r2v-tb-base:latest"
#: The label every container this backend starts carries (value: the backend's session id).
LABEL = "r2v.terminalbench.session"
_STEP = re.compile(r"^Step (\d+)/\d+ : ")
_KILL_ALL_BUT_INIT = (
    "for p in /proc/[0-9]*; do pid=${p#/proc/}; "
    'if [ "$pid" != 1 ] && [ "$pid" != $$ ]; then kill -9 "$pid" 2>/dev/null; fi; done; true'
)


def rewrite_dockerfile(text: str, base_image: str, keep: tuple[str, ...] = ()) -> str:
    """``text`` for the classic builder, every ``FROM`` pointed at ``base_image`` (but ``keep``)."""
    return render_for_classic_builder(parse_dockerfile(text), base_image, keep).text


class _AttachStream(ShellStream):
    """The container's stdin/stdout over an attach socket (Docker's multiplexed framing)."""

    def __init__(self, container: Any) -> None:
        self.container = container
        params = {"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
        self._socket = container.attach_socket(params=params)
        self._raw: socket.socket = getattr(self._socket, "_sock", self._socket)
        self._buffer = b""
        self._closed = False

    def write(self, data: bytes) -> None:
        try:
            self._raw.sendall(data)
        except OSError:
            self._closed = True

    def read(self, timeout: float) -> bytes | None:
        if self._closed:
            return None
        ready, _, _ = select.select([self._raw], [], [], timeout)
        if ready:
            try:
                chunk = self._raw.recv(1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                self._closed = True
            self._buffer += chunk
        out = bytearray()
        while len(self._buffer) >= 8:  # header: stream, 0, 0, 0, size (big-endian)
            size = int.from_bytes(self._buffer[4:8], "big")
            if len(self._buffer) < 8 + size:
                break
            out += self._buffer[8 : 8 + size]
            self._buffer = self._buffer[8 + size :]
        if not out and self._closed:
            return None
        return bytes(out)

    def interrupt(self) -> None:
        self.container.exec_run(["sh", "-c", _KILL_ALL_BUT_INIT])

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._socket.close()


class DockerBackend(Backend):
    """Build the task's Dockerfile (base rewritten) and run it; see the module docstring.

    Args:
        base_image: the local image Terminal-Bench's base images are rewritten to.
        docker_host: daemon address (default ``$DOCKER_HOST`` or the local socket).
        memory: container memory limit (Docker syntax).
        pids_limit: container process limit.
    """

    name = "docker"

    def __init__(
        self,
        *,
        base_image: str = DEFAULT_BASE_IMAGE,
        docker_host: str | None = None,
        memory: str = "4g",
        pids_limit: int = 256,
        max_output_bytes: int = 64 * 1024,
    ) -> None:
        super().__init__(max_output_bytes=max_output_bytes)
        try:
            import docker
        except ImportError as exc:
            raise MissingDependencyError(
                "the docker backend needs the docker SDK: pip install 'r2v-agent[docker]'"
            ) from exc
        host = docker_host or os.environ.get("DOCKER_HOST")
        self.client = docker.DockerClient(base_url=host) if host else docker.from_env()
        self.base_image = base_image
        self.memory = memory
        self.pids_limit = pids_limit
        self.container: Any = None
        self.session: str | None = None
        self._stream: _AttachStream | None = None
        self._task: Task | None = None

    # ------------------------------------------------------------------------------ interface
    def start(self, task: Task) -> None:
        self.close()
        self._task = task
        self.session = uuid.uuid4().hex[:12]
        try:
            self._start(task)
        except BaseException:
            self.close()  # a failed or interrupted start leaves nothing behind
            raise

    def _start(self, task: Task) -> None:
        images = {name: self._image(task, svc) for name, svc in task.services.items()} or {
            CLIENT: self._image(task, task.client)
        }
        network = "none"
        if task.multi_container:
            # One private network namespace for all services: loopback only, names -> 127.0.0.1.
            holder = self._run(
                task,
                "network",
                self.base_image,
                command=["sleep", "infinity"],
                network_mode="none",
                extra_hosts={name: "127.0.0.1" for name in task.services},
            )
            network = f"container:{holder.id}"
            for name, svc in task.services.items():
                if name == CLIENT:
                    continue
                self._run(
                    task,
                    name,
                    images[name],
                    command=svc.command,
                    entrypoint=svc.entrypoint,
                    environment=svc.environment,
                    working_dir=svc.working_dir,
                    network_mode=network,
                )
        client = task.client
        self.container = self._run(
            task,
            CLIENT,
            images[CLIENT],
            command=["bash", "--noprofile", "--norc"],
            entrypoint=[],
            stdin_open=True,
            environment={**client.environment, "TEST_DIR": "/tests", "HOME": "/root"},
            working_dir=client.working_dir,
            network_mode=network,
        )
        self._attach()

    def upload(self, source: Path, destination: str) -> None:
        assert self.container is not None
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            if source.is_dir():
                for item in sorted(source.rglob("*")):
                    archive.add(item, arcname=str(item.relative_to(source)), recursive=False)
                target_dir = destination
            else:
                archive.add(source, arcname=Path(destination).name)
                target_dir = str(Path(destination).parent)
        self.container.exec_run(["mkdir", "-p", target_dir])
        self.container.put_archive(target_dir, buffer.getvalue())

    def stop(self) -> None:
        if self.container is not None:
            if self._stream is not None:
                self._stream.close()
                self._stream = None
            self.container.reload()
            if self.container.status == "running":
                self.container.kill()
            self.container.wait()

    def restart(self) -> None:
        self.stop()
        self.container.start()
        self._attach()

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
        self.container = self._stream = None
        if self.session is None:
            return
        # Every container of this session, found through the daemon (not only those we hold).
        for container in self.client.containers.list(
            all=True, filters={"label": f"{LABEL}={self.session}"}
        ):
            with contextlib.suppress(Exception):  # already gone
                container.remove(force=True)
        self.session = None

    def leftovers(self) -> list[str]:
        """Names of containers any DockerBackend left on this daemon (should be empty)."""
        return [c.name for c in self.client.containers.list(all=True, filters={"label": LABEL})]

    # ------------------------------------------------------------------------------ internals
    def _attach(self) -> None:
        self._stream = _AttachStream(self.container)

    def _run(self, task: Task, role: str, image: str, **options: Any) -> Any:
        options = {k: v for k, v in options.items() if v is not None}
        return self.client.containers.run(
            image,
            detach=True,
            mem_limit=self.memory,
            pids_limit=self.pids_limit,
            labels={LABEL: self.session or "", "r2v.terminalbench.task": task.task_id,
                    "r2v.terminalbench.role": role},
            **options,
        )  # fmt: skip

    def _image(self, task: Task, service: Service) -> str:
        """The service's image: built from its Dockerfile, or its prebuilt ``image``."""
        if service.context is None:
            assert service.image is not None
            try:
                self.client.images.get(service.image)
            except Exception:  # noqa: BLE001 - docker.errors.ImageNotFound
                raise TaskSetupError(
                    f"task {task.task_id!r}: service {service.name!r} uses image "
                    f"{service.image!r}, which this daemon does not have (no registry is used)"
                ) from None
            return service.image
        return self._build(task, service)

    def _build(self, task: Task, service: Service) -> str:
        """Build (or reuse) a service's image; the tag hashes its build context and base image."""
        assert service.context is not None and service.dockerfile_path is not None
        try:
            instructions = parse_dockerfile(service.dockerfile_path.read_text())
            # Terminal-Bench copies the tests in only after the agent has finished, and the
            # solution is not the agent's to read -- unless the Dockerfile copies them itself.
            sources = " ".join(
                " ".join(ins.copy_spec().sources)
                for ins in instructions
                if ins.op in ("COPY", "ADD")
            )
        except DockerfileError as exc:
            raise TaskSetupError(
                f"task {task.task_id!r}: service {service.name!r}: {exc}"
            ) from None
        hidden = [
            name
            for name in ("tests", "solution.sh", "solution.yaml")
            if not re.search(rf"(^|[\s/]){re.escape(name)}\b", sources)
        ]
        base_id = self.client.images.get(self.base_image).id
        digest = hashlib.sha256(base_id.encode())
        for path in sorted(service.context.rglob("*")):
            if path.is_file() and path.relative_to(service.context).parts[0] not in hidden:
                digest.update(str(path.relative_to(service.context)).encode())
                digest.update(path.read_bytes())
        digest.update(service.dockerfile.encode())
        name = re.sub(r"[^a-z0-9_.-]", "-", f"r2v-tb-{task.task_id}-{service.name}".lower())
        tag = f"{name}:{digest.hexdigest()[:16]}"
        try:
            self.client.images.get(tag)
            return tag
        except Exception:  # noqa: BLE001 - docker.errors.ImageNotFound
            pass
        rendered = render_for_classic_builder(instructions, self.base_image)
        context = Path(tempfile.mkdtemp(prefix="r2v-tb-build-"))
        try:
            shutil.copytree(
                service.context,
                context,
                dirs_exist_ok=True,
                ignore=shutil.ignore_patterns(*hidden),
            )
            for extra, content in rendered.extra_files.items():
                (context / extra).write_text(content)
            dockerfile = context / ".r2v.Dockerfile"
            dockerfile.write_text(rendered.text)
            try:
                # Builds may reach package registries (the host's network); running containers
                # never do. forcerm: no intermediate container survives a failed step.
                self.client.images.build(
                    path=str(context),
                    dockerfile=dockerfile.name,
                    tag=tag,
                    network_mode="host",
                    rm=True,
                    forcerm=True,
                )
            except Exception as exc:  # noqa: BLE001 - docker.errors.BuildError / APIError
                raise TaskSetupError(
                    self._build_failure(task, service, rendered.origins, exc)
                ) from None
        finally:
            shutil.rmtree(context, ignore_errors=True)
        return tag

    @staticmethod
    def _build_failure(
        task: Task, service: Service, origins: list[Instruction], exc: Exception
    ) -> str:
        step: int | None = None
        output: list[str] = []
        for entry in getattr(exc, "build_log", None) or []:
            text = str(entry.get("stream", "")) if isinstance(entry, dict) else ""
            match = _STEP.match(text)
            if match:
                step, output = int(match.group(1)), []
            elif text.strip() and not text.startswith(" ---> "):
                output.append(text.strip())
        where = "the build"
        if step is not None and 0 < step <= len(origins):
            where = origins[step - 1].where
        reason = " ".join(str(getattr(exc, "msg", None) or exc).split())[-500:]
        if output:  # the failing step's own last words
            reason += "\n" + "\n".join(output[-8:])[-1500:]
        return (
            f"task {task.task_id!r}: building service {service.name!r} failed at {where}: {reason}"
        )
