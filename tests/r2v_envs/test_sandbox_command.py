"""The shared sandbox command builder: flags, mount order, the uid drop, and real rlimits."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from r2v_envs.sandbox import ISOLATION, BwrapCommand, apply_limits


def test_build_orders_mounts_then_isolation_then_the_uid_drop() -> None:
    argv = (
        BwrapCommand("bwrap")
        .ro_bind("/usr")
        .bind("/work", "/sandbox")
        .tmpfs("/tmp", perms="1777")
        .dir("/packages")
        .proc()
        .dev()
        .build(["python3", "x.py"], chdir="/sandbox", uid=61001, setpriv="/usr/bin/setpriv")
    )
    assert argv[:10] == ["bwrap", "--ro-bind", "/usr", "/usr", "--bind", "/work", "/sandbox"] + [
        "--perms",
        "1777",
        "--tmpfs",
    ]
    for flag in ISOLATION:
        assert flag in argv
    assert "--unshare-net" in argv and argv.index("--chdir") > argv.index("--dev")
    caps = argv.index("--cap-add")
    setpriv = argv.index("/usr/bin/setpriv")
    assert caps < setpriv < argv.index("python3")
    assert argv[setpriv : setpriv + 5] == [
        "/usr/bin/setpriv",
        "--reuid=61001",
        "--regid=61001",
        "--clear-groups",
        "--inh-caps=-all",
    ]
    assert argv[-2:] == ["python3", "x.py"]


def test_no_uid_means_no_capabilities_and_no_setpriv() -> None:
    argv = BwrapCommand("bwrap").build(["true"], chdir="/", uid=None, setpriv="/usr/bin/setpriv")
    assert "--cap-add" not in argv and "/usr/bin/setpriv" not in argv


def test_apply_limits_caps_file_size_in_the_child(tmp_path) -> None:
    target = tmp_path / "big"
    code = f"open({str(target)!r}, 'wb').write(b'x' * 100_000)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        preexec_fn=lambda: apply_limits(memory_bytes=2**31, file_bytes=10_000),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0  # SIGXFSZ or "File too large"
    assert target.stat().st_size <= 10_000


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")
def test_a_built_command_runs_without_network(tmp_path) -> None:
    command = BwrapCommand(shutil.which("bwrap") or "bwrap")
    for path in ("/usr", "/bin", "/lib", "/lib64", "/etc"):
        command.ro_bind_try(path)
    argv = (
        command.bind(tmp_path, "/sandbox")
        .tmpfs("/tmp")
        .proc()
        .dev()
        .build(["/bin/cat", "/proc/net/dev"], chdir="/sandbox")
    )
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if result.returncode != 0 and "Operation not permitted" in result.stderr:
        pytest.skip(f"bwrap cannot create namespaces here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    # A new network namespace holds the loopback device only.
    interfaces = [line.split(":")[0].strip() for line in result.stdout.splitlines()[2:]]
    assert interfaces == ["lo"]
