"""Seeded TerminalBench task families: a template whose files, values and expected answers come
from a seed, like TextWorld's game generator -- so a benchmark can hold out many instances.

Each family is a function ``rng -> FamilyTask``; :func:`write_task` writes one instance as an
ordinary Terminal-Bench task folder (``task.yaml``, ``Dockerfile``, ``app/``, ``solution.sh``,
``run-tests.sh``, ``tests/test_outputs.py``), named ``s<seed, 4 digits>-<family>``, that both
sandbox backends run unchanged. The same family and seed always write the same bytes. The seed
comes first so that task ids sort seed by seed: the env's reset seeds 0..n-1 of a split (how a
pipeline picks its training tasks) then take every family, not the first family's instances.

    python -m r2v_envs.terminalbench.families OUT_DIR --seeds 0-39   # 6 families x 40 seeds

Two suites: ``basic`` (the default; one command solves a task) and ``multistep`` (``--suite
multistep``: two commands, the second built from what the first one prints).

then ``gym.make("R2V/TerminalBench-v0", dataset_path=OUT_DIR, split="test")``: the usual split by
task id puts about a quarter of the instances in ``test``.
"""

from __future__ import annotations

import argparse
import json
import random
import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "FAMILIES",
    "MULTISTEP_FAMILIES",
    "SUITES",
    "FamilyTask",
    "family_of",
    "parse_seeds",
    "task_id",
    "write_dataset",
    "write_task",
]

_DOCKERFILE = (
    "FROM ghcr.io/laude-institute/t-bench/ubuntu-24-04:latest\n\nWORKDIR /app\nCOPY app/ /app/\n"
)
_RUN_TESTS = """#!/bin/bash
# Offline: the sandbox provides pytest (no uv/curl downloads).
set -e
cd /app
python3 -m pytest "${TEST_DIR:-/tests}/test_outputs.py" -rA -p no:cacheprovider
"""


@dataclass
class FamilyTask:
    """One generated instance: the instruction, the files under /app, the reference solution
    (bash) and the expected content of the file the task asks for."""

    instruction: str
    files: dict[str, str]
    solution: str
    output: str  #: the path under /app the task writes
    expected: str  #: its exact expected content, stripped of surrounding whitespace
    category: str = "text-processing"
    extra_checks: list[str] = field(default_factory=list)  #: more Python asserts


def _words(rng: random.Random, n: int) -> list[str]:
    return ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 8))) for _ in range(n)]


def count_matches(rng: random.Random) -> FamilyTask:
    levels = ["INFO", "WARN", "ERROR", "DEBUG"]
    target = rng.choice(levels)
    lines = []
    for i in range(rng.randint(12, 40)):
        level = rng.choice(levels)
        lines.append(f"2026-01-{1 + i % 28:02d} {level} {' '.join(_words(rng, 3))}")
    count = sum(1 for ln in lines if f" {target} " in ln)
    return FamilyTask(
        instruction=f"Count the lines of /app/app.log whose level is {target} and write the number "
        f"(just the number) to /app/count.txt.",
        files={"app.log": "\n".join(lines) + "\n"},
        solution=f"grep -c ' {target} ' /app/app.log > /app/count.txt || true",
        output="count.txt",
        expected=str(count),
    )


def column_sum(rng: random.Random) -> FamilyTask:
    columns = rng.sample(["price", "qty", "weight", "score", "age", "height", "cost"], 4)
    target = rng.randrange(len(columns))
    rows = [[rng.randint(0, 500) for _ in columns] for _ in range(rng.randint(5, 25))]
    text = ",".join(columns) + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows)
    total = sum(r[target] for r in rows)
    return FamilyTask(
        instruction=f"/app/data.csv has a header row. Write the sum of its {columns[target]!r} "
        f"column (just the number) to /app/sum.txt.",
        files={"data.csv": text},
        solution=f"awk -F, 'NR > 1 {{ s += ${target + 1} }} END {{ print s }}' /app/data.csv "
        "> /app/sum.txt",
        output="sum.txt",
        expected=str(total),
    )


def largest_file(rng: random.Random) -> FamilyTask:
    names = sorted(set(_words(rng, rng.randint(4, 9))))
    sizes = rng.sample(range(10, 4000), len(names))
    files = {f"data/{n}.bin": "x" * s for n, s in zip(names, sizes, strict=True)}
    largest = max(zip(sizes, names, strict=True))[1]
    return FamilyTask(
        instruction="Write the name (file name only, e.g. abc.bin) of the largest file in "
        "/app/data to /app/largest.txt.",
        files=files,
        solution="ls -S /app/data | head -n 1 > /app/largest.txt",
        output="largest.txt",
        expected=f"{largest}.bin",
        category="file-operations",
    )


def unique_emails(rng: random.Random) -> FamilyTask:
    users = _words(rng, rng.randint(3, 7))
    domains = ["example.com", "mail.test", "corp.invalid"]
    emails = [f"{u}@{rng.choice(domains)}" for u in users]
    chunks = []
    for _ in range(rng.randint(8, 20)):
        words = _words(rng, rng.randint(3, 8))
        if rng.random() < 0.6:
            words.insert(rng.randrange(len(words) + 1), rng.choice(emails))
        chunks.append(" ".join(words))
    text = "\n".join(chunks) + "\n"
    found = sorted({e for e in emails if e in text})
    if not found:  # at least one address in the text
        text += emails[0] + "\n"
        found = [emails[0]]
    return FamilyTask(
        instruction="Extract every e-mail address in /app/notes.txt and write them to "
        "/app/emails.txt, one per line, sorted, without duplicates.",
        files={"notes.txt": text},
        solution="grep -oE '[a-z]+@[a-z.]+[a-z]' /app/notes.txt | sort -u > /app/emails.txt",
        output="emails.txt",
        expected="\n".join(found),
    )


def set_config_value(rng: random.Random) -> FamilyTask:
    keys = rng.sample(["port", "host", "workers", "timeout", "mode", "level", "retries"], 5)
    values = {k: str(rng.randint(1, 900)) for k in keys}
    key = rng.choice(keys)
    new = str(int(values[key]) + rng.randint(1, 99))
    original = "".join(f"{k}={v}\n" for k, v in values.items())
    expected = "\n".join(f"{k}={new if k == key else v}" for k, v in values.items())
    return FamilyTask(
        instruction=f"In /app/settings.conf, change the value of {key} to {new}; leave every "
        "other line as it is.",
        files={"settings.conf": original},
        solution=f"sed -i 's/^{key}=.*/{key}={new}/' /app/settings.conf",
        output="settings.conf",
        expected=expected,
        category="system-administration",
    )


def line_range(rng: random.Random) -> FamilyTask:
    lines = [" ".join(_words(rng, 2)) for _ in range(rng.randint(15, 40))]
    start = rng.randint(2, len(lines) - 6)
    end = start + rng.randint(1, 5)
    return FamilyTask(
        instruction=f"Write lines {start} to {end} (counting from 1, both included) of "
        "/app/input.txt to /app/excerpt.txt.",
        files={"input.txt": "\n".join(lines) + "\n"},
        solution=f"sed -n '{start},{end}p' /app/input.txt > /app/excerpt.txt",
        output="excerpt.txt",
        expected="\n".join(lines[start - 1 : end]),
    )


# --------------------------------------------------------------------------- multistep suite
# Two commands each: the second needs a value that only the first one's output shows (a file
# name, a column's position, a port, a path, numbers), so the SLM must read its observation
# instead of replaying one memorised line. The basic families above need one command.


def pointer_line(rng: random.Random) -> FamilyTask:
    names = sorted(set(_words(rng, rng.randint(3, 6))))
    contents = {n: [" ".join(_words(rng, 3)) for _ in range(rng.randint(6, 12))] for n in names}
    files = {f"data/{n}.txt": "\n".join(lines) + "\n" for n, lines in contents.items()}
    chosen = rng.choice(names)
    line = rng.randint(2, 5)
    files["pointer.txt"] = f"{chosen}.txt\n"
    return FamilyTask(
        instruction=f"/app/pointer.txt names one of the files in /app/data. Write line {line} of "
        "that file to /app/line.txt.",
        files=files,
        solution=f"cat /app/pointer.txt\nsed -n '{line}p' /app/data/{chosen}.txt > /app/line.txt",
        output="line.txt",
        expected=contents[chosen][line - 1],
        category="file-operations",
    )


def column_max(rng: random.Random) -> FamilyTask:
    columns = rng.sample(["price", "qty", "weight", "score", "age", "height", "cost"], 5)
    target = rng.randrange(len(columns))
    rows = [[rng.randint(0, 999) for _ in columns] for _ in range(rng.randint(5, 20))]
    text = ",".join(columns) + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows)
    return FamilyTask(
        instruction=f"/app/data.csv has a header row. Write the largest value of its "
        f"{columns[target]!r} column (just the number) to /app/max.txt.",
        files={"data.csv": text},
        solution=f"head -n 1 /app/data.csv | tr , '\\n' | grep -n -x {columns[target]}\n"
        f"tail -n +2 /app/data.csv | cut -d, -f {target + 1} | sort -n | tail -n 1 > /app/max.txt",
        output="max.txt",
        expected=str(max(r[target] for r in rows)),
    )


def lookup_port(rng: random.Random) -> FamilyTask:
    services = rng.sample(["web", "db", "cache", "queue", "auth", "mail", "search", "api"], 5)
    # One port more than services: the last is the conf's current port, listed for none of
    # them, so leaving the file as it is never passes.
    ports = rng.sample(range(1024, 9999), len(services) + 1)
    service = rng.choice(services)
    port = ports[services.index(service)]
    table = "".join(f"{s} {p}\n" for s, p in zip(services, ports[:-1], strict=True))
    conf = {"host": "127.0.0.1", "port": str(ports[-1]), "workers": str(rng.randint(1, 16))}
    return FamilyTask(
        instruction=f"/app/ports.txt lists a port for each service. In /app/{service}.conf, set "
        f"port to the port listed for {service}; leave the other lines as they are.",
        files={
            "ports.txt": table,
            f"{service}.conf": "".join(f"{k}={v}\n" for k, v in conf.items()),
        },
        solution=f"grep '^{service} ' /app/ports.txt\n"
        f"sed -i 's/^port=.*/port={port}/' /app/{service}.conf",
        output=f"{service}.conf",
        expected="\n".join(f"{k}={port if k == 'port' else v}" for k, v in conf.items()),
        category="system-administration",
    )


def largest_first_line(rng: random.Random) -> FamilyTask:
    names = sorted(set(_words(rng, rng.randint(4, 8))))
    contents = {n: [" ".join(_words(rng, 4)) for _ in range(rng.randint(2, 30))] for n in names}
    largest = rng.choice(names)

    def size(name: str) -> int:
        return len("\n".join(contents[name]) + "\n")

    # `ls -S` ranks by bytes: grow the chosen file until no other comes close.
    while size(largest) <= 1.2 * max(size(n) for n in names if n != largest):
        contents[largest].append(" ".join(_words(rng, 4)))
    return FamilyTask(
        instruction="Write the first line of the largest file in /app/data to /app/first.txt.",
        files={f"data/{n}.log": "\n".join(lines) + "\n" for n, lines in contents.items()},
        solution=f"ls -S /app/data | head -n 1\nhead -n 1 /app/data/{largest}.log > /app/first.txt",
        output="first.txt",
        expected=contents[largest][0],
        category="file-operations",
    )


def find_token(rng: random.Random) -> FamilyTask:
    token = "KEY-" + "".join(rng.choices(string.ascii_uppercase + string.digits, k=6))
    paths = sorted(
        {
            f"{d}/{f}.txt"
            for d in _words(rng, rng.randint(2, 3))
            for f in _words(rng, rng.randint(2, 4))
        }
    )
    files = {
        f"tree/{p}": "\n".join(" ".join(_words(rng, 5)) for _ in range(4)) + "\n" for p in paths
    }
    chosen = rng.choice(paths)
    lines = files[f"tree/{chosen}"].splitlines()
    lines.insert(rng.randint(0, len(lines)), f"token {token}")
    files[f"tree/{chosen}"] = "\n".join(lines) + "\n"
    return FamilyTask(
        instruction=f"Exactly one file under /app/tree contains the text {token}. Copy that file to "
        "/app/found.txt.",
        files=files,
        solution=f"grep -rl {token} /app/tree\ncp /app/tree/{chosen} /app/found.txt",
        output="found.txt",
        expected="\n".join(lines),
        category="file-operations",
    )


def add_numbers(rng: random.Random) -> FamilyTask:
    first, second = sorted(set(_words(rng, 6)))[:2]
    a, b = rng.randint(100, 9999), rng.randint(100, 9999)
    return FamilyTask(
        instruction=f"/app/{first}.txt and /app/{second}.txt each hold one number. Write their sum "
        "(just the number) to /app/total.txt.",
        files={f"{first}.txt": f"{a}\n", f"{second}.txt": f"{b}\n"},
        solution=f"cat /app/{first}.txt /app/{second}.txt\necho $(({a} + {b})) > /app/total.txt",
        output="total.txt",
        expected=str(a + b),
    )


#: family name -> generator
FAMILIES: dict[str, Callable[[random.Random], FamilyTask]] = {
    "count-matches": count_matches,
    "column-sum": column_sum,
    "largest-file": largest_file,
    "unique-emails": unique_emails,
    "set-config-value": set_config_value,
    "line-range": line_range,
}

#: the two-command families (see above)
MULTISTEP_FAMILIES: dict[str, Callable[[random.Random], FamilyTask]] = {
    "pointer-line": pointer_line,
    "column-max": column_max,
    "lookup-port": lookup_port,
    "largest-first-line": largest_first_line,
    "find-token": find_token,
    "add-numbers": add_numbers,
}

#: suite name -> its families; ``basic`` (one command a task) is the default
SUITES: dict[str, dict[str, Callable[[random.Random], FamilyTask]]] = {
    "basic": FAMILIES,
    "multistep": MULTISTEP_FAMILIES,
}
_ALL_FAMILIES = {name: f for suite in SUITES.values() for name, f in suite.items()}


def task_id(family: str, seed: int) -> str:
    """The folder name (task id) of ``family``'s instance for ``seed``."""
    return f"s{seed:04d}-{family}"


def family_of(task: str) -> str:
    """The family a generated task id belongs to."""
    return task.split("-", 1)[1]


def write_task(root: str | Path, family: str, seed: int) -> Path:
    """Write the ``family`` instance of ``seed`` as a task folder under ``root``."""
    if family not in _ALL_FAMILIES:
        raise ValueError(f"unknown task family {family!r}; choose from {sorted(_ALL_FAMILIES)}")
    task = _ALL_FAMILIES[family](random.Random(f"{family}:{seed}"))
    folder = Path(root) / task_id(family, seed)
    (folder / "tests").mkdir(parents=True, exist_ok=True)
    for rel, content in task.files.items():
        path = folder / "app" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    instruction = task.instruction.replace("\n", " ")
    (folder / "task.yaml").write_text(
        "instruction: " + json.dumps(instruction) + "\n"
        "author_name: R2V-Agent task families\n"
        "difficulty: easy\n"
        f"category: {task.category}\n"
        f"tags: [{task.category}, generated, {family}]\n"
        "parser_name: pytest\n"
        "max_agent_timeout_sec: 120\n"
        "max_test_timeout_sec: 60\n"
        "run_tests_in_same_shell: false\n"
    )
    (folder / "Dockerfile").write_text(_DOCKERFILE)
    (folder / "run-tests.sh").write_text(_RUN_TESTS)
    # No `set -e`: the expert replays solution.sh line by line in the episode's long-lived
    # shell, where it would be a wasted step that the SLM learns to copy (and, there, a shell
    # that exits at the next failing command).
    (folder / "solution.sh").write_text(f"#!/bin/bash\n{task.solution}\n")
    checks = "".join(f"    {line}\n" for line in task.extra_checks)
    (folder / "tests" / "test_outputs.py").write_text(
        "def test_output():\n"
        f"    with open('/app/{task.output}') as handle:\n"
        "        got = handle.read().strip()\n"
        f"    assert got == {task.expected!r}, got\n" + checks
    )
    return folder


def write_dataset(
    root: str | Path, seeds: Iterable[int], families: Iterable[str] | None = None
) -> Path:
    """Write every family's instance for each seed under ``root`` (by default the ``basic``
    suite's families); returns ``root``."""
    root = Path(root)
    for family in families or FAMILIES:
        for seed in seeds:
            write_task(root, family, seed)
    return root


def parse_seeds(text: str) -> list[int]:
    """``"0-39"`` or ``"1,5,9"`` -> seeds."""
    if "-" in text:
        low, high = (int(x) for x in text.split("-", 1))
        return list(range(low, high + 1))
    return [int(x) for x in text.split(",") if x]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="folder to write the task folders into")
    parser.add_argument("--seeds", default="0-39", help="e.g. 0-39 or 1,5,9")
    parser.add_argument(
        "--suite", default="basic", choices=sorted(SUITES), help="which families (default basic)"
    )
    parser.add_argument("--families", help="comma-separated families (overrides --suite)")
    args = parser.parse_args(argv)
    families = args.families.split(",") if args.families else list(SUITES[args.suite])
    root = write_dataset(args.out, parse_seeds(args.seeds), families)
    print(f"wrote {len(list(root.glob('*/task.yaml')))} tasks under {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
