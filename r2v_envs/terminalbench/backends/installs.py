"""Which Dockerfile ``RUN`` steps only install what this machine already has.

Terminal-Bench Dockerfiles commonly start with ``RUN apt-get update && apt-get install -y ...``
or ``RUN pip install ...``. The local backend's sandbox has no network and no root, so such a
step cannot run there; but when every package it names is already installed on the host (the
sandbox sees the host's system and Python read-only), the step has nothing left to do.
:func:`already_satisfied` recognises exactly that case: a step made only of apt/pip install
commands (and their usual companions: ``apt-get update``, ``apt-get clean``, removing the apt
lists) whose packages are all present, by name (a pinned version is not compared). Anything
else is run as written.
"""

from __future__ import annotations

import importlib.metadata
import re
import shlex
import shutil
import subprocess

__all__ = ["already_satisfied"]

_SEPARATORS = re.compile(r"&&|\|\||;|\n")
# A pip requirement's name, before any extras, version specifier or marker.
_REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*([<>=!~].*)?$")
_APT_FLAGS_WITH_VALUE = {"-o", "-t", "--target-release", "-c", "--config-file"}


def already_satisfied(script: str) -> tuple[bool, list[str]]:
    """``(True, packages)`` when ``script`` only installs packages that are all present here;
    ``(False, missing_or_reason)`` otherwise."""
    packages: list[str] = []
    for segment in _SEPARATORS.split(script.replace("\\\n", " ")):
        try:
            words = shlex.split(segment)
        except ValueError:
            return False, ["unparsable shell"]
        while words and (words[0] in ("sudo", "env") or "=" in words[0]):
            words = words[1:]  # DEBIAN_FRONTEND=noninteractive apt-get ...
        if not words:
            continue
        verdict = _apt(words) if words[0] in ("apt-get", "apt") else None
        if verdict is None and _is_pip(words):
            verdict = _pip(words)
        if verdict is None:
            if words[:2] in (["rm", "-rf"], ["rm", "-fr"]) and all(
                w.startswith("/var/lib/apt/lists") or w.startswith("/var/cache/apt")
                for w in words[2:]
            ):
                continue
            return False, [f"not an install command: {' '.join(words)[:80]}"]
        ok, names = verdict
        if not ok:
            return False, names
        packages += names
    return True, packages


def _apt(words: list[str]) -> tuple[bool, list[str]] | None:
    args = words[1:]
    command = next((a for a in args if not a.startswith("-")), None)
    if command in ("update", "clean", "autoclean", "autoremove"):
        return True, []
    if command != "install":
        return None
    names, skip = [], False
    for arg in args[args.index("install") + 1 :]:
        if skip:
            skip = False
        elif arg in _APT_FLAGS_WITH_VALUE:
            skip = True
        elif not arg.startswith("-"):
            names.append(arg.split("=", 1)[0])
    missing = [n for n in names if not _dpkg_installed(n)]
    return (not missing, missing or names)


def _dpkg_installed(name: str) -> bool:
    if shutil.which("dpkg-query") is None:
        return False
    probe = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", name.split(":", 1)[0]],
        capture_output=True,
        text=True,
    )
    return probe.returncode == 0 and probe.stdout.strip().endswith("installed")


def _is_pip(words: list[str]) -> bool:
    head = words[0].rsplit("/", 1)[-1]
    if head in ("pip", "pip3") or re.fullmatch(r"pip3\.\d+", head):
        return len(words) > 1 and words[1] == "install"
    if re.fullmatch(r"python(3(\.\d+)?)?", head):
        return words[1:4] == ["-m", "pip", "install"]
    return head == "uv" and words[1:3] == ["pip", "install"]


def _pip(words: list[str]) -> tuple[bool, list[str]] | None:
    args = words[words.index("install") + 1 :]
    names = []
    for arg in args:
        if arg.startswith("-"):
            if arg in ("-r", "--requirement", "-e", "--editable", "-c", "--constraint"):
                return False, [f"pip {arg} needs files or the network"]
            continue  # --no-cache-dir, -q, --break-system-packages, ...
        match = _REQUIREMENT.match(arg)
        if match is None:
            return False, [f"pip requirement {arg!r} (a URL or a path)"]
        names.append(match.group(1))
    missing = [n for n in names if not _distribution_present(n)]
    return (not missing, missing or names)


def _distribution_present(name: str) -> bool:
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True
