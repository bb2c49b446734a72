"""Hostile submissions: each one fails, within its time limit, leaves the host untouched, leaves
no process behind, and the next episode works."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from pathlib import Path

import gymnasium as gym
import pytest

from r2v_envs.humaneval.data import find_release_file
from tests.processes import left_running

from .conftest import needs_bwrap

pytestmark = needs_bwrap

SIG = "def has_close_elements(numbers, threshold):\n"
WRONG = SIG + "    return None\n"


@pytest.fixture(scope="module")
def env():
    env = gym.make("R2V/HumanEvalPlus-v0", expert_hints=True).unwrapped
    yield env
    env.close()


@pytest.fixture
def canary():
    """A file and a folder in the real home directory that hostile code tries to destroy."""
    folder = Path.home() / f".r2v-canary-{uuid.uuid4().hex}"
    folder.mkdir()
    (folder / "keep.txt").write_text("precious")
    yield folder
    for child in folder.iterdir():
        child.unlink()
    folder.rmdir()


class _Listener:
    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.stop = True
        self.thread.join()
        self.sock.close()


def _submit(env, code: str) -> tuple[dict, str, float]:
    env.reset(options={"task_id": "HumanEval/0"})
    env.step(f"```python\n{code}\n```")
    start = time.monotonic()
    obs, reward, terminated, truncated, info = env.step("submit")
    return info, obs, time.monotonic() - start


def _next_episode_works(env) -> None:
    _, info = env.reset(options={"task_id": "HumanEval/2"})
    env.step(info["expert_action"])
    *_, info = env.step("submit")
    assert info["success"]


CASES = {
    "infinite_loop": SIG + "    while True:\n        pass\n",
    "infinite_loop_at_import": "while True:\n    pass\n" + WRONG,
    "fork_bomb": "import posix\nwhile True:\n    try:\n        posix.fork()\n    except OSError:\n        pass\n",
    "memory_bomb": "blob = bytearray(64 * 1024**3)\n" + WRONG,
    "memory_creep": SIG + "    hog = []\n    while True:\n        hog.append(' ' * 10**7)\n",
    "stdout_100mb_print": SIG + "    print('x' * (100 * 1024 * 1024))\n    return None\n",
    "stdout_100mb_raw_fd": "import posix\nposix.write(1, b'x' * (100 * 1024 * 1024))\n" + WRONG,
    "rm_rf_home": "import posix\nposix.system('rm -rf ~ {canary}')\n" + WRONG,
    "delete_outside_workdir": "import posix\nposix.unlink('{canary}/keep.txt')\nposix.rmdir('{canary}')\n"
    + WRONG,
    "write_host_tmp": "open('/tmp/{token}', 'w').write('pwned')\n" + WRONG,
    "write_host_home": "open('{canary}/planted.txt', 'w').write('pwned')\n" + WRONG,
    "network_socket": "import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2).send(b'x')\n"
    + WRONG,
    "sys_exit": "import sys\nsys.exit(0)\n",
    "os_exit_in_call": SIG + "    import posix\n    posix._exit(0)\n",
    "kill_parent": "import posix\nposix.kill(posix.getppid(), 9)\n" + WRONG,
    "kill_everything": "import posix\nposix.kill(-1, 9)\n" + WRONG,
    "fake_pass_with_eq": (
        "import builtins\nclass Yes:\n    def __eq__(self, other):\n        return True\n"
        "builtins.bool = lambda *a: True\n" + SIG + "    return Yes()\n"
    ),
    "read_expected_from_frames": (
        "import sys\n" + SIG + "    frame = sys._getframe(1)\n"
        "    while frame:\n        for v in frame.f_locals.values():\n"
        "            if isinstance(v, dict) and 'base' in v:\n                return v['base'][0]\n"
        "        frame = frame.f_back\n    return None\n"
    ),
    "read_test_file": (
        "import gzip, json, os\nsolution = None\n"
        "for path in ['{release}', os.path.expanduser('~/.cache/evalplus/HumanEvalPlus-v0.1.10.jsonl'),"
        " '/root/.cache/evalplus/HumanEvalPlus-v0.1.10.jsonl']:\n"
        "    try:\n        opener = gzip.open if path.endswith('.gz') else open\n"
        "        for line in opener(path, 'rt'):\n            task = json.loads(line)\n"
        "            if task['task_id'] == 'HumanEval/0':\n"
        "                solution = task['prompt'] + task['canonical_solution']\n"
        "    except OSError:\n        pass\n"
        "if solution:\n    exec(solution)\nelse:\n" + "    " + WRONG.replace("\n    ", "\n        ")
    ),
    "recursion_bomb": "import sys\nsys.setrecursionlimit(10**9)\n"
    + SIG
    + "    return has_close_elements(numbers, threshold)\n",
    "threads_outlive_the_call": (
        "import threading\ndef spin():\n    while True:\n        pass\n"
        "for _ in range(4):\n    threading.Thread(target=spin).start()\n" + WRONG
    ),
    "orphan_process": (
        "import posix, time\nif posix.fork() == 0:\n    while True:\n        time.sleep(1)\n"
        + WRONG
    ),
    "ignore_alarm_signal": "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
    + SIG
    + "    while True:\n        pass\n",
    "stop_itself": "import posix, signal\nposix.kill(posix.getpid(), signal.SIGSTOP)\n" + WRONG,
    "disk_bomb": "with open('big.bin', 'wb') as f:\n    for _ in range(2048):\n        f.write(b'0' * 1024**2)\n"
    + WRONG,
    "forge_result_file": (
        "import posix, json\nwith open('result.jsonl', 'w') as f:\n"
        "    f.write(json.dumps({{'load': 'ok'}}) + '\\n')\n"
        "    for i in range(2000):\n        f.write(json.dumps({{'i': i, 'status': 'ok', 'out': True}}) + '\\n')\n"
        "posix._exit(0)\n"
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_submission_is_contained(env, canary: Path, name: str) -> None:
    listener = _Listener()
    token = f"r2v-hostile-{uuid.uuid4().hex}"
    release = find_release_file()
    code = CASES[name].format(canary=canary, port=listener.port, token=token, release=release)
    try:
        info, obs, elapsed = _submit(env, code)
    finally:
        listener.close()
    assert not info["success"] and info["base_pass"] is False, obs
    assert elapsed < 20, f"{name} took {elapsed:.1f}s"
    # The host is untouched and nothing is left running.
    assert (canary / "keep.txt").read_text() == "precious"
    assert sorted(p.name for p in canary.iterdir()) == ["keep.txt"]
    assert not Path(f"/tmp/{token}").exists()
    assert listener.connections == 0
    sandbox = env.unwrapped.sandbox
    assert not sandbox.setpriv or sandbox.uids_used, "the submission ran under no sandbox uid"
    assert left_running(lambda uid: uid in sandbox.uids_used) == []
    _next_episode_works(env)
