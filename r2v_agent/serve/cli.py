"""``r2v serve``'s options, and running the app under uvicorn."""

from __future__ import annotations

import argparse
import ipaddress
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from r2v_agent.errors import ConfigError

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = ["add_arguments", "run_from_args"]

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--agent", required=True, help="a saved agent folder or a preset name")
    parser.add_argument("--teacher-url", required=True, help="the teacher's API root (.../v1)")
    parser.add_argument("--teacher-model", required=True, help="model name sent to the teacher")
    parser.add_argument("--teacher-api-key-file", help="file holding the teacher's API key")
    parser.add_argument("--teacher-timeout", type=float, default=30.0, help="seconds an attempt")
    parser.add_argument("--teacher-retries", type=int, default=2)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--api-key-file", help="file holding the key every client must send as a bearer token"
    )
    parser.add_argument("--model-name", default="r2v-agent", help="the id /v1/models lists")
    parser.add_argument("--tau", type=float, help="escalation threshold (default: the agent's)")
    parser.add_argument(
        "--family",
        choices=("textworld", "terminalbench", "humaneval"),
        help="prompt family: action extraction and generation limits (default: the agent's)",
    )
    parser.add_argument(
        "--backend",
        default="transformers",
        choices=("transformers", "llamacpp", "vllm", "openai"),
        help="the SLM engine",
    )
    parser.add_argument("--slm-url", help="the openai backend's SLM server")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-queue", type=int, default=64, help="waiting steps before 429")
    parser.add_argument("--max-batch", type=int, default=8, help="steps per engine batch (vllm)")
    parser.add_argument("--request-timeout", type=float, default=120.0)
    parser.add_argument("--max-body-bytes", type=int, default=1_000_000)


def _read_key(path: str | None, what: str) -> str | None:
    if path is None:
        return None
    try:
        key = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {path!r}: cannot read it ({exc})") from None
    if not key:
        raise ConfigError(f"{what} {path!r} is empty")
    return key


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_app(args: argparse.Namespace) -> Starlette:
    """Load the agent and teacher named by ``args``; the ASGI app (no server yet)."""
    from r2v_agent.agent import RoutedAgent
    from r2v_agent.serve.app import ServeSettings, create_app
    from r2v_agent.teacher.openai_http import OpenAITeacher

    if args.tau is not None and not 0.0 <= args.tau <= 1.0:
        raise ConfigError(f"--tau must be in [0, 1], got {args.tau}")
    for name in ("max_queue", "max_batch", "max_body_bytes"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
    api_key = _read_key(args.api_key_file, "--api-key-file")
    if api_key is None and not _is_loopback(args.host):
        logger.warning(
            "serving on %s without --api-key-file: anyone who reaches it may use it", args.host
        )
    teacher = OpenAITeacher(
        args.teacher_url,
        args.teacher_model,
        api_key=_read_key(args.teacher_api_key_file, "--teacher-api-key-file"),
        timeout=args.teacher_timeout,
        max_retries=args.teacher_retries,
    )
    options = {"url": args.slm_url} if args.backend == "openai" else None
    agent = RoutedAgent.from_pretrained(
        args.agent, seed=args.seed, backend=args.backend, backend_options=options
    )
    settings = ServeSettings(
        model_name=args.model_name,
        api_key=api_key,
        tau=args.tau,
        family=args.family or agent.family or "textworld",
        max_queue=args.max_queue,
        max_batch=args.max_batch,
        request_timeout=args.request_timeout,
        max_body_bytes=args.max_body_bytes,
    )
    return create_app(agent, teacher, settings)


def run_from_args(args: argparse.Namespace) -> int:
    import uvicorn

    app = build_app(args)
    # access_log off: our own line per request says what happened and never holds a body.
    uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_level="info")
    return 0
