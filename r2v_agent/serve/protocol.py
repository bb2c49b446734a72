"""The OpenAI chat-completions wire format: parsing a request, shaping replies and errors.

Only what ``r2v serve`` needs: a request is validated into a :class:`ChatRequest` (a bad one is
an :class:`APIError` with the HTTP status and OpenAI's error object), and a finished step
becomes a ``chat.completion`` object or the chunks of a ``stream=true`` reply. Fields of the
request the server does not act on (``temperature``, ``top_p``, ``tools`` ...) are accepted
and ignored, as OpenAI-compatible servers commonly do; ``n`` other than 1 is refused.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

__all__ = ["APIError", "ChatRequest", "parse_request", "completion", "stream_chunks", "error_body"]

_ROLES = ("system", "developer", "user", "assistant", "tool")


class APIError(Exception):
    """A request the server refuses: HTTP ``status`` with OpenAI's error object."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.param = param
        self.code = code
        self.headers = headers or {}


def error_body(error: APIError) -> dict[str, Any]:
    return {
        "error": {
            "message": error.message,
            "type": error.kind,
            "param": error.param,
            "code": error.code,
        }
    }


@dataclass(frozen=True)
class ChatRequest:
    """A validated chat request."""

    messages: list[dict[str, str]]  #: role/content pairs, content flattened to text
    observation: str  #: the last user (or tool) message: what the verifier and features read
    stream: bool = False
    include_usage: bool = False  #: stream_options.include_usage
    max_tokens: int | None = None  #: caps the teacher's reply
    seed: int | None = None  #: reseeds the SLM's sampling for this request
    session: str | None = None  #: r2v.session: steps of one conversation share features
    tau: float | None = None  #: r2v.tau: this request's escalation threshold


def parse_request(raw: bytes, *, max_messages: int, max_chars: int) -> ChatRequest:
    """Validate a request body; raise :class:`APIError` (400) naming the bad field."""
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise APIError(400, f"the request body is not valid JSON ({exc})") from None
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise APIError(400, "'messages' must be a non-empty list", param="messages")
    if len(messages) > max_messages:
        raise APIError(
            413,
            f"{len(messages)} messages; this server takes at most {max_messages}",
            param="messages",
        )
    flat = [_message(m, i) for i, m in enumerate(messages)]
    chars = sum(len(m["content"]) for m in flat)
    if chars > max_chars:
        raise APIError(
            413,
            f"the messages hold {chars} characters; the limit is {max_chars}",
            param="messages",
        )
    asks = [m for m in flat if m["role"] == "user"]  # tool messages are user turns by now
    if not asks:
        raise APIError(400, "'messages' needs at least one user message", param="messages")
    n = body.get("n", 1)
    if n != 1:
        raise APIError(400, "only n=1 is supported (one step per request)", param="n")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise APIError(400, "'stream' must be true or false", param="stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise APIError(400, "'stream_options' must be an object", param="stream_options")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None and (not _is_int(max_tokens) or max_tokens < 1):
        raise APIError(400, "'max_tokens' must be a positive integer", param="max_tokens")
    seed = body.get("seed")
    if seed is not None and not _is_int(seed):
        raise APIError(400, "'seed' must be an integer", param="seed")
    extra = body.get("r2v") or {}
    if not isinstance(extra, dict):
        raise APIError(400, "'r2v' must be an object (session, tau)", param="r2v")
    unknown = sorted(set(extra) - {"session", "tau"})
    if unknown:
        raise APIError(400, f"'r2v' takes session and tau, not {unknown}", param="r2v")
    session = extra.get("session")
    if session is not None and (not isinstance(session, str) or not 0 < len(session) <= 200):
        raise APIError(
            400, "'r2v.session' must be a string of 1-200 characters", param="r2v.session"
        )
    tau = extra.get("tau")
    if tau is not None and (
        isinstance(tau, bool)
        or not isinstance(tau, (int, float))
        or not math.isfinite(tau)
        or not 0.0 <= tau <= 1.0
    ):
        raise APIError(400, "'r2v.tau' must be a number in [0, 1]", param="r2v.tau")
    return ChatRequest(
        messages=flat,
        observation=asks[-1]["content"],
        stream=stream,
        include_usage=bool(options.get("include_usage", False)),
        max_tokens=max_tokens,
        seed=seed,
        session=session,
        tau=None if tau is None else float(tau),
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _message(message: Any, index: int) -> dict[str, str]:
    where = f"messages[{index}]"
    if not isinstance(message, dict):
        raise APIError(400, f"{where} must be an object", param=where)
    role = message.get("role")
    if role not in _ROLES:
        raise APIError(400, f"{where}.role must be one of {', '.join(_ROLES)}", param=where)
    content = message.get("content")
    if content is None:
        content = ""  # an assistant turn that only called tools
    if isinstance(content, list):  # content parts: only text is understood
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                raise APIError(400, f"{where}: only text content parts are supported", param=where)
            texts.append(str(part.get("text", "")))
        content = "".join(texts)
    if not isinstance(content, str):
        raise APIError(400, f"{where}.content must be a string or text parts", param=where)
    # The SLM's chat template knows system/user/assistant; the others map onto them.
    mapped = {"developer": "system", "tool": "user"}.get(str(role), str(role))
    return {"role": mapped, "content": content}


def completion(
    *, request_id: str, created: int, model: str, content: str, usage: dict[str, int], r2v: Any
) -> dict[str, Any]:
    """A non-streamed ``chat.completion`` object, with the routing record under ``r2v``."""
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": usage,
        "r2v": r2v,
    }


def stream_chunks(
    *,
    request_id: str,
    created: int,
    model: str,
    content: str,
    usage: dict[str, int],
    r2v: Any,
    include_usage: bool,
) -> list[str]:
    """The server-sent events of a streamed reply: the role, the content (decided before the
    first byte: the router needs the whole candidate), the finish with ``r2v``, the usage when
    asked for, then ``[DONE]``."""

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> str:
        body = {
            "id": request_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": choices,
            **extra,
        }
        return f"data: {json.dumps(body)}\n\n"

    events = [
        chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]),
        chunk([{"index": 0, "delta": {"content": content}, "finish_reason": None}]),
        chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}], r2v=r2v),
    ]
    if include_usage:
        events.append(chunk([], usage=usage))
    events.append("data: [DONE]\n\n")
    return events
