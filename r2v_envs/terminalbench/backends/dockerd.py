"""Start a private Docker daemon (tests, benchmarks, machines without one), and stop it after.

The daemon runs from Debian's ``docker.io`` with ``--iptables=false --ip6tables=false
--bridge=none`` on its own socket and data root, so it neither needs nor touches the host's
network set-up. The base image is built with ``scripts/build_tb_base_image.sh`` if missing.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["private_dockerd", "ensure_base_image", "docker_unavailable_reason", "BASE_IMAGE_SCRIPT"]

#: The script that builds the local base image (a source checkout ships it under scripts/).
BASE_IMAGE_SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "build_tb_base_image.sh"


@contextmanager
def private_dockerd(root: Path) -> Iterator[str]:
    """Run a dockerd whose images live under ``root`` (kept between runs, a cache); yields its
    ``unix://`` address. Its sockets and run state go to a short temporary folder: a unix socket
    path has at most 107 bytes, and containerd's would not fit under a deep ``root``."""
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="r2v-dockerd-", dir="/tmp"))
    sock = run_dir / "docker.sock"
    host = f"unix://{sock}"
    log = open(root / "dockerd.log", "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            "dockerd",
            "--iptables=false",
            "--ip6tables=false",
            "--bridge=none",
            "-H",
            host,
            "--data-root",
            str(root / "data"),
            "--exec-root",
            str(run_dir / "exec"),
            "--pidfile",
            str(run_dir / "docker.pid"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            probe = subprocess.run(["docker", "-H", host, "info"], capture_output=True)
            if probe.returncode == 0:
                break
            if proc.poll() is not None:
                raise RuntimeError(f"dockerd exited: see {root / 'dockerd.log'}")
            time.sleep(0.5)
        else:
            raise RuntimeError("dockerd did not come up within 60 s")
        yield host
    finally:
        with contextlib.suppress(ProcessLookupError):  # it may have exited already
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        _unmount_below(root)
        _unmount_below(run_dir)
        shutil.rmtree(run_dir, ignore_errors=True)


def _unmount_below(root: Path) -> None:
    """Lazily unmount what dockerd left mounted under ``root`` (its netns file, its data root's
    bind mount): otherwise the folder cannot be removed and the host keeps the mounts."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return
    prefix = str(root) + "/"
    points = [line.split()[1] for line in mounts if len(line.split()) > 1]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def ensure_base_image(host: str, tag: str = "r2v-tb-base:latest") -> None:
    """Build the base image unless the daemon has one of the script's current version."""
    env = {**os.environ, "DOCKER_HOST": host}
    wanted = re.search(r"^R2V_TB_BASE_VERSION=(\S+)", BASE_IMAGE_SCRIPT.read_text(), re.M)
    probe = subprocess.run(
        ["docker", "image", "inspect", "--format", '{{index .Config.Labels "r2v.tb-base"}}', tag],
        env=env,
        capture_output=True,
        text=True,
    )
    if probe.returncode or (wanted and probe.stdout.strip() != wanted.group(1)):
        subprocess.run(["bash", str(BASE_IMAGE_SCRIPT), tag], env=env, check=True, timeout=1800)


def docker_unavailable_reason() -> str | None:
    """Why the docker tests cannot run here, or ``None`` if they can."""
    if shutil.which("dockerd") is None or shutil.which("docker") is None:
        return (
            "dockerd is not installed (apt-get install docker.io; `make test` installs it as root)"
        )
    if os.geteuid() != 0:
        return "starting a private dockerd needs root"
    return None
