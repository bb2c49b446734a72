"""A Dockerfile reader shared by both TerminalBench backends.

:func:`parse_dockerfile` turns the text into :class:`Instruction` objects that keep their line
number (so errors can name the line), with continuation lines joined the way Docker joins them
and BuildKit here-documents (``COPY <<EOF /app/f``, ``RUN <<EOF``) attached to their instruction.
The local backend replays the instructions itself; the docker backend renders them back with
:func:`render_for_classic_builder`, because the daemon's classic builder has no here-documents
and no ``COPY --chmod``.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field

from r2v_envs.terminalbench.solution import HEREDOC_OPENER, heredoc_openers

__all__ = [
    "Instruction",
    "CopySpec",
    "DockerfileError",
    "parse_dockerfile",
    "render_for_classic_builder",
    "Rendered",
]

_HEREDOC_OPS = ("RUN", "COPY", "ADD")


class DockerfileError(ValueError):
    """A Dockerfile the reader cannot follow; the message names the line."""


@dataclass(frozen=True)
class Heredoc:
    delimiter: str
    body: str  #: the lines between opener and delimiter, newline-terminated


@dataclass(frozen=True)
class Instruction:
    op: str  #: upper-case keyword (FROM, RUN, COPY, ...)
    args: str  #: the arguments, continuation lines joined
    line: int  #: 1-based line where the instruction starts
    heredocs: tuple[Heredoc, ...] = ()

    @property
    def where(self) -> str:
        return f"Dockerfile line {self.line} ({self.op} {_short(self.args)})"

    def run_script(self) -> str:
        """A RUN's command as one shell script (JSON form joined, here-documents kept)."""
        if self.op != "RUN":
            raise ValueError(f"{self.where} is not a RUN")
        _, rest = _split_flags(self.args)
        if rest.lstrip().startswith("["):
            return shlex.join(_json_list(rest, self))
        if self.heredocs and HEREDOC_OPENER.match(rest.strip()):
            # RUN <<EOF ... EOF: the body is the script.
            return "\n".join(doc.body for doc in self.heredocs)
        script = rest
        for doc in self.heredocs:  # bash reads the here-documents after the command line
            script += "\n" + doc.body + doc.delimiter
        return script

    def copy_spec(self) -> CopySpec:
        """The sources, destination and flags of a COPY/ADD."""
        if self.op not in ("COPY", "ADD"):
            raise ValueError(f"{self.where} is not a COPY or ADD")
        flags, rest = _split_flags(self.args)
        if rest.lstrip().startswith("["):
            parts = _json_list(rest, self)
        else:
            try:
                parts = shlex.split(rest)
            except ValueError as exc:
                raise DockerfileError(f"{self.where}: {exc}") from None
        if len(parts) < 2:
            raise DockerfileError(f"{self.where}: needs at least a source and a destination")
        *sources, dest = parts
        inline: dict[str, str] = {}
        files: list[str] = []
        docs = {doc.delimiter: doc for doc in self.heredocs}
        for src in sources:
            opener = HEREDOC_OPENER.fullmatch(src)
            if opener and opener.group(3) in docs:
                inline[opener.group(3)] = docs[opener.group(3)].body
            else:
                files.append(src)
        return CopySpec(files, inline, dest, flags)


@dataclass(frozen=True)
class CopySpec:
    sources: list[str]  #: paths or globs in the build context
    inline: dict[str, str]  #: here-document name -> content
    dest: str
    flags: dict[str, str] = field(default_factory=dict)  #: --chmod=..., --chown=..., --from=...


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _split_flags(args: str) -> tuple[dict[str, str], str]:
    flags: dict[str, str] = {}
    rest = args.lstrip()
    while rest.startswith("--"):
        token, _, rest = rest.partition(" ")
        key, _, value = token[2:].partition("=")
        flags[key] = value
        rest = rest.lstrip()
    return flags, rest


def _json_list(text: str, where: Instruction) -> list[str]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DockerfileError(f"{where.where}: bad JSON form: {exc}") from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DockerfileError(f"{where.where}: the JSON form must be a list of strings")
    return value


def parse_dockerfile(text: str) -> list[Instruction]:
    """Every instruction of ``text``, in order (parser directives and comments dropped)."""
    lines = text.splitlines()
    instructions: list[Instruction] = []
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        if not stripped or stripped.startswith("#"):
            i += 1
            continue
        start = i
        logical = lines[i]
        # A trailing backslash joins the next line; comment lines inside are skipped (Docker).
        while logical.rstrip().endswith("\\") and i + 1 < len(lines):
            logical = logical.rstrip()[:-1]
            i += 1
            while i < len(lines) and lines[i].lstrip().startswith("#"):
                i += 1
            if i < len(lines):
                logical += lines[i]
        i += 1
        op, _, args = logical.strip().partition(" ")
        op = op.upper()
        docs: list[Heredoc] = []
        if op in _HEREDOC_OPS:
            for strip_tabs, delimiter in heredoc_openers(args):
                body: list[str] = []
                while True:
                    if i >= len(lines):
                        raise DockerfileError(
                            f"Dockerfile line {start + 1} ({op}): here-document {delimiter!r} "
                            "is never closed"
                        )
                    line = lines[i]
                    i += 1
                    if (line.lstrip("\t") if strip_tabs else line) == delimiter:
                        break
                    body.append(line.lstrip("\t") if strip_tabs else line)
                docs.append(Heredoc(delimiter, "".join(b + "\n" for b in body)))
        instructions.append(Instruction(op, args.strip(), start + 1, tuple(docs)))
    return instructions


@dataclass
class Rendered:
    """A Dockerfile for the classic builder: its text, the files it adds to the build context,
    and for each of its instructions the original one (so a failed build step names the task's
    own line)."""

    text: str
    extra_files: dict[str, str]
    origins: list[Instruction]


def render_for_classic_builder(
    instructions: list[Instruction], base_image: str, keep_images: tuple[str, ...] = ()
) -> Rendered:
    """A Dockerfile the classic builder accepts, and the extra files it needs in its context.

    Every ``FROM`` points at ``base_image`` (unless its image is in ``keep_images`` or names an
    earlier stage); here-documents become context files; ``COPY --chmod`` becomes COPY + chmod.
    """
    out: list[str] = []
    origins: list[Instruction] = []
    extra: dict[str, str] = {}
    stages: set[str] = set()
    for n, ins in enumerate(instructions):
        if ins.op == "FROM":
            _, rest = _split_flags(ins.args)
            image, *tail = rest.split()
            if len(tail) >= 2 and tail[0].upper() == "AS":
                stages.add(tail[1].lower())
            if image.lower() not in stages and image not in keep_images:
                image = base_image
            out.append(" ".join(["FROM", image, *tail]))
        elif ins.op == "RUN" and ins.heredocs:
            name = f".r2v-run-{n}.sh"
            extra[name] = ins.run_script() + "\n"
            out.append(f"COPY {name} /tmp/{name}")
            out.append(f"RUN bash /tmp/{name} && rm -f /tmp/{name}")
        elif ins.op in ("COPY", "ADD") and (ins.heredocs or "chmod" in _split_flags(ins.args)[0]):
            spec = ins.copy_spec()
            into_file = len(spec.sources) + len(spec.inline) == 1 and not spec.dest.endswith("/")
            folder = spec.dest.rstrip("/") + "/"
            sources, targets = list(spec.sources), []
            for k, (delimiter, content) in enumerate(spec.inline.items()):
                name = f".r2v-heredoc-{n}-{k}"
                extra[name] = content
                if into_file:  # one here-document: the destination is the file
                    sources.append(name)
                else:  # several: each is a file named after its delimiter
                    out.append(f"COPY {name} {folder}{delimiter}")
                    targets.append(folder + delimiter)
            if sources:
                kept = [f"--{k}={v}" for k, v in spec.flags.items() if k not in ("chmod", "link")]
                out.append(" ".join([ins.op, *kept, *sources, spec.dest]))
                targets += [spec.dest] if into_file else [folder + _name(s) for s in spec.sources]
            if "chmod" in spec.flags:
                out.append(f"RUN chmod {spec.flags['chmod']} {' '.join(targets)}")
        else:
            out.append(f"{ins.op} {ins.args}".rstrip())
        origins += [ins] * (len(out) - len(origins))
    return Rendered("\n".join(out) + "\n", extra, origins)


def _name(source: str) -> str:
    return source.rstrip("/").rsplit("/", 1)[-1]
