"""A pipeline run's agent rebuilt from other stages: the BC or the DPO policy, the learned or the
rule verifier -- to see which trained stage moves the SLM alone.

    python benchmarks/agent_variants.py --config benchmarks/configs/textworld-main.yaml \
        --policy bc --verifier rule --save-agent runs/textworld-main-variants/bc-rule
    python benchmarks/run.py --config benchmarks/configs/textworld-main.yaml \
        --agent runs/textworld-main-variants/bc-rule --methods slm --tasks 100 --seeds 100 \
        --backend llamacpp --out benchmarks/results/textworld-main/stages/bc-rule.jsonl

The variant keeps the run's router, tau and teacher (only SLM-alone episodes are meant: the
router was trained on the features of the run's own policy and verifier). The policy's weight
files are hard-linked where the disk allows; nothing in the run's folder is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from r2v_agent.config import PipelineConfig
from r2v_agent.errors import R2VAgentError
from r2v_agent.training.router_ablation import copy_agent

#: policy choice -> the stage folder (under the run) holding that policy
POLICIES = {"bc": "bc/policy", "dpo": "dpo/policy"}
VERIFIERS = ("learned", "rule")


def save_variant(run_dir: Path, policy: str, verifier: str, out: Path) -> None:
    agent = run_dir / "router" / "agent"
    config_path = agent / "config.json"
    if not config_path.is_file():
        raise R2VAgentError(f"{agent} holds no agent: has the pipeline's router stage run?")
    source = run_dir / POLICIES[policy]
    if not source.is_dir():
        raise R2VAgentError(f"{source}: no such policy folder")
    if out.exists():
        raise R2VAgentError(f"{str(out)!r} exists: choose a new folder")
    spec = json.loads(config_path.read_text())
    copy_agent(agent, out, policy=source)
    if verifier == "rule":
        if "path" in spec["verifier"]:
            (out / spec["verifier"]["path"]).unlink(missing_ok=True)
        spec["verifier"] = {"type": "RuleVerifier", "family": spec["family"]}
    spec["policy"]["path"] = "policy"
    spec["router_note"] = f"agent variant: {policy} policy, {verifier} verifier"
    (out / "config.json").write_text(json.dumps(spec, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True, help="the pipeline config of a finished run")
    parser.add_argument("--policy", required=True, choices=list(POLICIES))
    parser.add_argument("--verifier", required=True, choices=VERIFIERS)
    parser.add_argument("--save-agent", required=True, help="a new folder for the agent")
    args = parser.parse_args(argv)
    try:
        config = PipelineConfig.from_yaml(args.config)
        save_variant(config.run_dir, args.policy, args.verifier, Path(args.save_agent))
    except (R2VAgentError, OSError) as exc:
        print(f"agent_variants: error: {exc}", file=sys.stderr)
        return 2
    print(f"saved {args.save_agent}: {args.policy} policy, {args.verifier} verifier")
    return 0


if __name__ == "__main__":
    sys.exit(main())
