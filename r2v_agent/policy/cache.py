"""Reuse SLM samples across the methods of an evaluation run.

Methods and thresholds share trajectory prefixes: every method samples the SLM at every step
(the router needs the candidates' features), an episode's sampling is reseeded from the same
seed, and until two methods act differently their prompts are the same. A call with the same
model, prompt tokens, sampling state and settings gives the same candidates, so
:class:`CachedPolicy` stores each call's candidates with the sampling state *after* the call,
and on a hit restores that state -- later steps then draw exactly what an uncached run draws,
and the records are identical (a test checks this).

The store is one SQLite file (:class:`SampleCache`), shared by an evaluation's worker
processes; it also counts hits and calls, so a run can report what the cache saved.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from r2v_agent.errors import ConfigError
from r2v_agent.policy.base import Candidate, SampleResult, prompt_ids

__all__ = ["SampleCache", "CachedPolicy", "model_fingerprint"]


class SampleCache:
    """SQLite key-value store of SLM samples, safe for several processes (WAL, busy timeout)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=120, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS samples (key TEXT PRIMARY KEY, value TEXT)")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER)"
        )
        self._db.execute("INSERT OR IGNORE INTO counters VALUES ('hits', 0), ('calls', 0)")

    def get(self, key: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT value FROM samples WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, key: str, value: dict[str, Any]) -> None:
        self._db.execute("INSERT OR REPLACE INTO samples VALUES (?, ?)", (key, json.dumps(value)))

    def count(self, hit: bool) -> None:
        self._db.execute("UPDATE counters SET value = value + 1 WHERE name = 'calls'")
        if hit:
            self._db.execute("UPDATE counters SET value = value + 1 WHERE name = 'hits'")

    def counters(self) -> dict[str, int]:
        """``{"hits": ..., "calls": ..., "entries": ...}`` over the file's whole life."""
        out = dict(self._db.execute("SELECT name, value FROM counters").fetchall())
        out["entries"] = self._db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
        return {k: int(v) for k, v in out.items()}

    def close(self) -> None:
        self._db.close()


def model_fingerprint(policy: Any) -> str:
    """What identifies the weights a policy samples from: a hash of its safetensors files, of
    its in-memory weights, or -- for a server -- its URL and model name."""
    digest = hashlib.sha256(type(policy).__name__.encode())
    source = getattr(policy, "source", None)
    files = sorted(Path(source).glob("*.safetensors")) if source is not None else []
    if files:
        for path in files:
            with path.open("rb") as handle:
                while block := handle.read(1 << 24):
                    digest.update(block)
    elif getattr(policy, "base_model", None) is not None:
        for name, tensor in sorted(policy.base_model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().float().cpu().numpy().tobytes())
    elif hasattr(policy, "base_url"):
        digest.update(f"{policy.base_url}|{policy.model}".encode())
    else:
        raise ConfigError(f"cannot identify the weights of {type(policy).__name__} for caching")
    return digest.hexdigest()[:32]


def _get_state(policy: Any) -> str:
    """The policy's sampling state, as text."""
    generator = getattr(policy, "generator", None)
    if generator is not None:  # transformers: a torch.Generator
        return base64.b64encode(bytes(generator.get_state().tolist())).decode()
    rng = getattr(policy, "rng", None)
    if rng is not None:  # the other backends: a NumPy Generator
        return json.dumps(rng.bit_generator.state, sort_keys=True)
    raise ConfigError(f"{type(policy).__name__} exposes no sampling state to cache by")


def _set_state(policy: Any, state: str) -> None:
    generator = getattr(policy, "generator", None)
    if generator is not None:
        import torch

        raw = base64.b64decode(state)
        generator.set_state(torch.tensor(list(raw), dtype=torch.uint8))
    else:
        policy.rng.bit_generator.state = json.loads(state)


class CachedPolicy:
    """A :class:`~r2v_agent.policy.base.Policy` that serves repeated calls from a
    :class:`SampleCache`; everything else is the wrapped policy's."""

    def __init__(self, policy: Any, cache: SampleCache, fingerprint: str | None = None) -> None:
        self.policy = policy
        self.cache = cache
        self.fingerprint = fingerprint or model_fingerprint(policy)
        _get_state(policy)  # fails now, not at the first step, for a policy without one

    def __getattr__(self, name: str) -> Any:  # k, temperature, tokenizer, base_model, ...
        return getattr(self.policy, name)

    def reseed(self, seed: int) -> None:
        self.policy.reseed(seed)

    def sample(
        self,
        messages: list[dict[str, str]],
        *,
        k: int | None = None,
        greedy: bool = False,
        single_line: bool = True,
        max_new_tokens: int | None = None,
    ) -> SampleResult:
        start = time.perf_counter()
        before = _get_state(self.policy)
        settings = [
            self.fingerprint,
            prompt_ids(self.policy.tokenizer, messages),
            hashlib.sha256(before.encode()).hexdigest(),
            k or self.policy.k,
            greedy,
            single_line,
            max_new_tokens,
            self.policy.temperature,
            getattr(self.policy, "entropy_top_k", None),
        ]
        key = hashlib.sha256(json.dumps(settings).encode()).hexdigest()
        hit = self.cache.get(key)
        self.cache.count(hit is not None)
        if hit is not None:
            _set_state(self.policy, hit["state_after"])
            return SampleResult(
                [Candidate(**c) for c in hit["candidates"]],
                hit["prompt_tokens"],
                hit["new_tokens"],
                time.perf_counter() - start,
                computed_prompt_tokens=0,
            )
        result = self.policy.sample(
            messages, k=k, greedy=greedy, single_line=single_line, max_new_tokens=max_new_tokens
        )
        self.cache.put(
            key,
            {
                "candidates": [dataclasses.asdict(c) for c in result.candidates],
                "prompt_tokens": result.prompt_tokens,
                "new_tokens": result.new_tokens,
                "state_after": _get_state(self.policy),
            },
        )
        return result
