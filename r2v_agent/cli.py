"""The ``r2v`` command: the training pipeline's stages and the evaluation runner.

r2v pipeline --config benchmarks/configs/smoke.yaml      # every stage, resumable
r2v collect --config FILE                                # one stage (its inputs must exist)
r2v train {bc,verifier,dpo,router} --config FILE
r2v report --config FILE
r2v eval ...                                             # benchmarks/run.py's runner
r2v serve --agent DIR --teacher-url URL --teacher-model M  # OpenAI-compatible endpoint
r2v config                                               # every config field, documented
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from typing import Any

from r2v_agent.errors import R2VAgentError

__all__ = ["main"]


def _print_fields(cls: Any, prefix: str = "") -> None:
    """Every config field with its default and help text, sections indented (YAML-like)."""
    for f in dataclasses.fields(cls):
        if f.name == "base_dir":
            continue
        help_text = f.metadata.get("help", "")
        factory: Any = f.default_factory
        if factory is not dataclasses.MISSING and dataclasses.is_dataclass(section := factory()):
            print(f"{prefix}{f.name}:  # {help_text}")
            _print_fields(type(section), prefix + "  ")
            continue
        default = f.default if f.default is not dataclasses.MISSING else factory()
        print(f"{prefix}{f.name}: {default!r}  # {help_text}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="r2v", description="R2V-Agent training and evaluation")
    sub = parser.add_subparsers(dest="command", required=True)
    pipe = sub.add_parser("pipeline", help="run every stage (resumes where it stopped)")
    pipe.add_argument("--config", required=True)
    pipe.add_argument("--force", action="store_true", help="rerun stages that are up to date")
    pipe.add_argument(
        "--from",
        dest="rerun_from",
        choices=["collect", "bc", "verifier", "dpo", "router", "report"],
        help="rerun this stage and every stage after it (e.g. after a code change)",
    )
    pipe.add_argument(
        "--until",
        choices=["collect", "bc", "verifier", "dpo", "router", "report"],
        help="stop after this stage",
    )
    for name in ("collect", "report"):
        p = sub.add_parser(name, help=f"run the {name} stage")
        p.add_argument("--config", required=True)
        p.add_argument("--force", action="store_true")
    train = sub.add_parser("train", help="run one training stage")
    train.add_argument("stage", choices=["bc", "verifier", "dpo", "router"])
    train.add_argument("--config", required=True)
    train.add_argument("--force", action="store_true")
    sub.add_parser("config", help="print every config field with its default and meaning")
    from r2v_agent.evaluation import run as evaluation_run  # argparse only; nothing heavy

    ev = sub.add_parser(
        "eval",
        help="run a resumable evaluation sweep (the same options as benchmarks/run.py)",
        description=evaluation_run.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluation_run.add_arguments(ev)
    from r2v_agent.serve import cli as serve_cli  # argparse only; nothing heavy

    serve = sub.add_parser(
        "serve",
        help="serve the routed agent as an OpenAI-compatible chat endpoint",
        description=serve_cli.__doc__,
    )
    serve_cli.add_arguments(serve)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    try:
        if args.command == "config":
            from r2v_agent.config import PipelineConfig

            _print_fields(PipelineConfig)
            return 0
        if args.command == "eval":
            return evaluation_run.run_from_args(args, ev)
        if args.command == "serve":
            return serve_cli.run_from_args(args)
        from r2v_agent.config import PipelineConfig
        from r2v_agent.training.pipeline import run_pipeline, run_stage

        config = PipelineConfig.from_yaml(args.config)
        if args.command == "pipeline":
            done = run_pipeline(
                config, force=args.force, rerun_from=args.rerun_from, until=args.until
            )
            if "router" in done:
                print(f"agent: {config.agent_dir}")
            if "report" in done:
                print(f"report: {config.run_dir / 'report' / 'report.md'}")
                print((config.run_dir / "report" / "report.md").read_text())
            return 0
        stage = args.stage if args.command == "train" else args.command
        stats = run_stage(config, stage, force=args.force)
        for key, value in stats.items():
            if not isinstance(value, (list, dict)):
                print(f"{key}: {value}")
        return 0
    except R2VAgentError as exc:
        print(f"r2v: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
