"""The docker backend: the task's own Dockerfile, built and run by any Docker-compatible daemon.

Terminal-Bench's base images (``ghcr.io/laude-institute/t-bench/...``) are rewritten to a local
base image (``r2v-tb-base:latest`` by default; build it with ``scripts/build_tb_base_image.sh``,
since no registry may be reachable). Containers run with ``network_mode="none"``, a memory and a
process limit; the shell protocol is the local backend's, over the container's attached stdin.
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
from pathlib import Path
from typing import Any

from r2v_envs.errors import MissingDependencyError
from r2v_envs.terminalbench.backends.base import (
    Backend,
    ShellStream,
)
from r2v_envs.terminalbench.tasks import Task

__all__ = ["DockerBackend", "DEFAULT_BASE_IMAGE", "rewrite_dockerfile"]

DEFAULT_BASE_IMAGE = "r2v-tb-base:latest"
_FROM = re.compile(r"^\s*FROM\s+(?:--platform=\S+\s+)?(\S+)(.*)$", re.IGNORECASE | re.MULTILINE)
_KILL_ALL_BUT_INIT = (
    "for p in /proc/[0-9]*; do pid=${p#/proc/}; "
    'if [ "$pid" != 1 ] && [ "$pid" != $$ ]; then kill -9 "$pid" 2>/dev/null; fi; done; true'
)


def rewrite_dockerfile(text: str, base_image: str, keep: tuple[str, ...] = ()) -> str:
    """Point every ``FROM`` at ``base_image`` unless the image is in ``keep``."""

    def swap(match: re.Match[str]) -> str:
        image, rest = match.group(1), match.group(2)
        return match.group(0) if image in keep else f"FROM {base_image}{rest}"

    return _FROM.sub(swap, text)


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
        self._stream: _AttachStream | None = None
        self._task: Task | None = None

    # ------------------------------------------------------------------------------ interface
    def start(self, task: Task) -> None:
        self.close()
        self._task = task
        image = self._build(task)
        self.container = self.client.containers.run(
            image,
            command=["bash", "--noprofile", "--norc"],
            stdin_open=True,
            detach=True,
            network_mode="none",
            mem_limit=self.memory,
            pids_limit=self.pids_limit,
            environment={"TEST_DIR": "/tests", "HOME": "/root"},
            labels={"r2v.terminalbench": task.task_id},
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
        if self.container is not None:
            if self._stream is not None:
                self._stream.close()
            self.container.remove(force=True)
        self.container = self._stream = None

    # ------------------------------------------------------------------------------ internals
    def _attach(self) -> None:
        self._stream = _AttachStream(self.container)

    def _build(self, task: Task) -> str:
        """Build (or reuse) the task's image; the tag hashes the task files and base image."""
        base_id = self.client.images.get(self.base_image).id
        digest = hashlib.sha256(base_id.encode())
        for path in sorted(task.path.rglob("*")):
            if path.is_file() and "tests" not in path.relative_to(task.path).parts:
                digest.update(str(path.relative_to(task.path)).encode())
                digest.update(path.read_bytes())
        tag = f"r2v-tb-{task.task_id}:{digest.hexdigest()[:16]}"
        try:
            self.client.images.get(tag)
            return tag
        except Exception:  # noqa: BLE001 - docker.errors.ImageNotFound
            pass
        context = Path(tempfile.mkdtemp(prefix="r2v-tb-build-"))
        try:
            # Terminal-Bench copies tests in only after the agent has finished.
            shutil.copytree(
                task.path,
                context,
                dirs_exist_ok=True,
                ignore=shutil.ignore_patterns("tests", "solution.sh"),
            )
            dockerfile = context / "Dockerfile"
            dockerfile.write_text(rewrite_dockerfile(dockerfile.read_text(), self.base_image))
            self.client.images.build(path=str(context), tag=tag, network_mode="none", rm=True)
        finally:
            shutil.rmtree(context, ignore_errors=True)
        return tag
