"""Resumable evaluation runs: agents x envs x perturbation seeds x episodes -> JSONL.

Same as ``r2v eval``; see ``python benchmarks/run.py --help`` and benchmarks/README.md.
"""

from __future__ import annotations

import sys

from r2v_agent.evaluation.run import main

if __name__ == "__main__":
    sys.exit(main())
