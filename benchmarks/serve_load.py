"""A bounded load test of ``r2v serve`` on loopback: C concurrent clients x N requests.

    python benchmarks/serve_load.py                       # 32 clients x 25 requests, SmolLM2
    python benchmarks/serve_load.py --agent tiny-random --clients 4 --requests 3   # a quick look

Starts a loopback fake teacher and ``r2v serve`` (a separate process, as a user would), warms
it up, then runs the clients (threads with the official ``openai`` client, each its own
session, so the per-episode features accumulate; a conversation grows turn by turn and keeps its
last few turns). A 429 is retried after its ``Retry-After`` and counted; any other error is a
failure. Prints p50/p95/p99 latency, throughput, the teacher's share, the server's RSS after the
warm-up and after the load (the growth must stay under ``--rss-bound-mib``), and whether it shut
down cleanly on SIGTERM. Exit status 1 when a request failed, the bound was exceeded or the
shutdown was not clean.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo's tests package
from tests.r2v_agent.fake_openai import free_port, running_fake_openai  # noqa: E402

ROOMS = ["kitchen", "pantry", "cellar", "garden", "attic", "hallway", "bedroom", "study"]
THINGS = ["knife", "lamp", "key", "apple", "book", "coin", "rope", "map"]


def observation(client: int, turn: int) -> str:
    room, thing = ROOMS[(client + turn) % len(ROOMS)], THINGS[(client * 3 + turn) % len(THINGS)]
    return (
        f"-= {room.title()} =-\nYou are in the {room}. There is a {thing} on the floor and a "
        f"door to the {ROOMS[(client + turn + 1) % len(ROOMS)]}.\nYour task: find the "
        f"{THINGS[client % len(THINGS)]} and put it in the chest."
    )


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def run_client(
    openai: Any, url: str, client_id: int, requests: int, keep_turns: int, out: dict[str, Any]
) -> None:
    client = openai.OpenAI(base_url=url, api_key="load", max_retries=0, timeout=600)
    messages: list[dict[str, str]] = [
        {"role": "system", "content": "You play a text adventure. Answer with one command."}
    ]
    for turn in range(requests):
        messages.append({"role": "user", "content": observation(client_id, turn)})
        window = messages[:1] + messages[1:][-(2 * keep_turns - 1) :]
        while True:
            start = time.perf_counter()
            try:
                reply = client.chat.completions.create(
                    model="r2v-agent",
                    messages=window,
                    extra_body={"r2v": {"session": f"client-{client_id}"}},
                )
            except openai.RateLimitError as exc:
                out["rate_limited"] += 1
                time.sleep(float(exc.response.headers.get("retry-after", "1")))
                continue
            except Exception as exc:  # any other error is a failed request
                out["failures"].append(f"client {client_id} turn {turn}: {exc!r}")
                break
            out["latencies"].append(time.perf_counter() - start)
            out["actors"].append(reply.model_extra["r2v"]["actor"])
            messages.append({"role": "assistant", "content": reply.choices[0].message.content})
            break
        out["progress"].update(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agent", default="smollm2-135m", help="a saved agent or a preset")
    parser.add_argument("--backend", default="llamacpp", help="the SLM engine of r2v serve")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=25, help="requests per client")
    parser.add_argument("--keep-turns", type=int, default=3, help="turns a client keeps")
    parser.add_argument("--max-queue", type=int, default=64)
    parser.add_argument("--rss-bound-mib", type=float, default=200.0)
    parser.add_argument("--out", help="also write the figures here (JSON)")
    args = parser.parse_args(argv)
    import httpx
    import openai

    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    with running_fake_openai() as teacher, tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp) / "serve.log"
        command = [sys.executable, "-m", "r2v_agent.cli", "serve", "--agent", args.agent]
        command += ["--teacher-url", teacher.base_url, "--teacher-model", "load-teacher"]
        command += ["--port", str(port), "--backend", args.backend]
        command += ["--max-queue", str(args.max_queue)]
        with log_path.open("w") as log:
            server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 600
            while True:
                if server.poll() is not None:
                    print(log_path.read_text()[-3000:])
                    raise SystemExit("r2v serve exited while starting")
                try:
                    if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("r2v serve did not start in 600 s")
                time.sleep(0.5)
            warm: dict[str, Any] = {
                "latencies": [],
                "actors": [],
                "failures": [],
                "rate_limited": 0,
                "progress": tqdm(disable=True),
            }
            run_client(openai, url, 999, 3, args.keep_turns, warm)  # warm-up: caches, GGUF
            rss_before = rss_mib(server.pid)
            out: dict[str, Any] = {
                "latencies": [],
                "actors": [],
                "failures": [],
                "rate_limited": 0,
                "progress": tqdm(total=args.clients * args.requests, desc="requests"),
            }
            threads = [
                threading.Thread(
                    target=run_client,
                    args=(openai, url, c, args.requests, args.keep_turns, out),
                )
                for c in range(args.clients)
            ]
            start = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            wall = time.perf_counter() - start
            out["progress"].close()
            rss_after = rss_mib(server.pid)
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                code = server.wait(60)
            except subprocess.TimeoutExpired:
                server.kill()
                code = None
        log_text = log_path.read_text()
    clean = code in (0, -signal.SIGTERM) and "Application shutdown complete" in log_text
    latencies = sorted(out["latencies"])
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    share = sum(a == "teacher" for a in out["actors"]) / max(1, len(out["actors"]))
    figures = {
        "agent": args.agent,
        "backend": args.backend,
        "clients": args.clients,
        "requests_per_client": args.requests,
        "answered": len(latencies),
        "failed": len(out["failures"]),
        "rate_limited_retried": out["rate_limited"],
        "wall_seconds": round(wall, 1),
        "throughput_rps": round(len(latencies) / wall, 3),
        "latency_p50_s": round(quantiles[49], 3),
        "latency_p95_s": round(quantiles[94], 3),
        "latency_p99_s": round(quantiles[98], 3),
        "teacher_share": round(share, 3),
        "server_rss_mib_before": round(rss_before, 1),
        "server_rss_mib_after": round(rss_after, 1),
        "rss_growth_mib": round(rss_after - rss_before, 1),
        "rss_bound_mib": args.rss_bound_mib,
        "clean_shutdown": clean,
        "cpus": os.cpu_count(),
    }
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    llm_share_line = [ln for ln in metrics.splitlines() if ln.startswith("r2v_llm_share ")]
    print(f"server /metrics: {llm_share_line[0] if llm_share_line else 'no r2v_llm_share'}")
    for failure in out["failures"][:10]:
        print("FAILED", failure)
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=1) + "\n")
    ok = not out["failures"] and figures["rss_growth_mib"] <= args.rss_bound_mib and clean
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
