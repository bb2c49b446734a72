"""Child-side runner of the HumanEval sandbox. Standard library only; runs untrusted code.

Usage: ``python -I -S _runner.py PAYLOAD.json RESULT.jsonl``. The payload holds the code, the entry
point, the call inputs and a time limit per call. For each call one JSON line goes to RESULT: the
output encoded as tagged JSON, or the error. The expected outputs are never sent here: the parent
compares, so code that tampers with this process can at most misreport its own outputs.
"""

import base64
import builtins
import io
import json
import os
import signal
import sys

_type, _len, _repr, _isinstance = type, len, repr, isinstance  # captured before untrusted code
_MAX_DEPTH = 64
_MAX_ITEMS = 20_000_000
_STDOUT_CAP = 64 * 1024
_FLAT = frozenset((type(None), bool, float, str))  # ints may be huge: encoded one by one
_BIG = 1 << 12000  # ~3600 decimal digits, below Python's 4300-digit str() cap


class _Unencodable(Exception):
    pass


def _encode(value, depth=0, budget=None):
    budget = budget if budget is not None else [_MAX_ITEMS]
    budget[0] -= 1
    if depth > _MAX_DEPTH or budget[0] < 0:
        raise _Unencodable("output too deep or too large")
    kind = _type(value)
    if kind is int and (value >= _BIG or value <= -_BIG):
        return {"int": hex(value)}  # decimal str() of huge ints is capped; hex is not
    if value is None or kind is bool or kind is int or kind is float or kind is str:
        return value
    if kind is list or kind is tuple:
        # Flat sequences of plain scalars (the common case) travel as-is: cheap on both sides.
        budget[0] -= _len(value)
        if budget[0] < 0:
            raise _Unencodable("output too large")
        if all(_type(v) in _FLAT or (_type(v) is int and -_BIG < v < _BIG) for v in value):
            return {"flat_" + kind.__name__: value if kind is list else list(value)}
        budget[0] += _len(value)
        return {kind.__name__: [_encode(v, depth + 1, budget) for v in value]}
    if kind is set or kind is frozenset:
        return {kind.__name__: [_encode(v, depth + 1, budget) for v in value]}
    if kind is dict:
        return {
            "dict": [
                [_encode(k, depth + 1, budget), _encode(v, depth + 1, budget)]
                for k, v in value.items()
            ]
        }
    if kind is complex:
        return {"complex": [value.real, value.imag]}
    if kind is bytes:
        return {"bytes": base64.b64encode(value).decode("ascii")}
    numpy = sys.modules.get("numpy")  # an allowed package: report its values as Python's
    if numpy is not None and _isinstance(value, (numpy.generic, numpy.ndarray)):
        return _encode(value.tolist(), depth + 1, budget)
    raise _Unencodable("unsupported output type " + kind.__name__)


class _CappedSink(io.TextIOBase):
    """stdout/stderr during calls: keep the first 64 KiB, drop the rest cheaply."""

    def __init__(self):
        self.parts, self.size = [], 0

    def write(self, text):
        if self.size < _STDOUT_CAP:
            self.parts.append(text[: _STDOUT_CAP - self.size])
        self.size += _len(text)
        return _len(text)

    def writable(self):
        return True


class _CallTimeout(BaseException):
    pass


def _on_alarm(signum, frame):
    raise _CallTimeout()


def _guard():
    """Disable destructive functions (EvalPlus's reliability guard, and more). The sandbox's
    process, file-system and network isolation is the real barrier; this only makes accidents
    fail fast and loudly."""
    import shutil
    import subprocess

    builtins.exit = builtins.quit = None
    for name in (
        "kill",
        "killpg",
        "system",
        "putenv",
        "remove",
        "removedirs",
        "rmdir",
        "fchdir",
        "setuid",
        "fork",
        "forkpty",
        "rename",
        "renames",
        "truncate",
        "replace",
        "unlink",
        "fchmod",
        "fchown",
        "chmod",
        "chown",
        "chroot",
        "lchown",
        "lchmod",
        "execv",
        "execve",
        "execvp",
        "spawnv",
        "spawnve",
        "posix_spawn",
        "posix_spawnp",
    ):
        if hasattr(os, name):
            setattr(os, name, None)
    shutil.rmtree = shutil.move = shutil.chown = None
    subprocess.Popen = None
    for name in ("ipdb", "joblib", "resource", "psutil", "tkinter"):
        sys.modules[name] = None


def main():
    payload_path, result_path = sys.argv[1], sys.argv[2]
    with open(payload_path) as handle:
        payload = json.load(handle)
    out = open(result_path, "w")  # noqa: SIM115 - kept open until os._exit
    write, flush, dumps = out.write, out.flush, json.dumps

    def emit(record):
        write(dumps(record) + "\n")
        flush()

    sys.path[:0] = payload.get("sys_path", [])  # the read-only allowed packages
    signal.signal(signal.SIGALRM, _on_alarm)
    sink = _CappedSink()
    real_stdout, real_stderr = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = sink
    _guard()
    namespace = {"__name__": "__main__"}
    try:
        signal.setitimer(signal.ITIMER_REAL, payload["load_time_limit"])
        exec(compile(payload["code"], "solution.py", "exec"), namespace)
        signal.setitimer(signal.ITIMER_REAL, 0)
        fn = namespace[payload["entry_point"]]
    except _CallTimeout:
        emit({"load": "timeout"})
        os._exit(0)
    except BaseException as exc:  # noqa: BLE001 - anything the code raises is its failure
        signal.setitimer(signal.ITIMER_REAL, 0)
        emit({"load": "error", "error": _type(exc).__name__ + ": " + str(exc)[:500]})
        os._exit(0)
    emit({"load": "ok"})
    for index, (args, limit) in enumerate(
        zip(payload["inputs"], payload["time_limits"], strict=False)
    ):
        try:
            signal.setitimer(signal.ITIMER_REAL, limit)
            value = fn(*args)
            signal.setitimer(signal.ITIMER_REAL, 0)
            emit({"i": index, "status": "ok", "out": _encode(value)})
        except _CallTimeout:
            emit({"i": index, "status": "timeout"})
            if payload.get("stop_on_failure"):
                break
        except BaseException as exc:  # noqa: BLE001
            signal.setitimer(signal.ITIMER_REAL, 0)
            emit(
                {
                    "i": index,
                    "status": "error",
                    "error": _type(exc).__name__ + ": " + str(exc)[:500],
                }
            )
            if payload.get("stop_on_failure"):
                break
    sys.stdout, sys.stderr = real_stdout, real_stderr
    emit({"stdout": "".join(sink.parts)})
    # os._exit: no atexit hooks or lingering threads of the untrusted code get to run.
    os._exit(0)


if __name__ == "__main__":
    main()
