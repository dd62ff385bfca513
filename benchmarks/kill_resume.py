"""Kill -9 a CLI run at random moments, resume it with no flags, count identical bundles.

    python benchmarks/kill_resume.py [--trials 12] [--latency 0.05] [--seed 16]

Each trial starts `personagen run SPEC --out DIR` (fake provider, `--latency` s per call)
in a directory of its own, SIGKILLs it at a moment drawn uniformly from 0.2 s to the
uninterrupted run's wall time, then runs `personagen resume RUN_ID` with no flags (or the
same `run` again when the id was not shown yet), and compares qa.jsonl with the
uninterrupted run's. Prints one line per trial and the count.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.conftest import CORPUS  # noqa: E402
from tests.integration._kill_trials import kill_trial, reference  # noqa: E402


def main() -> None:
    """Run the trials and print the count of identical resumed bundles."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        docs = root / "docs"
        docs.mkdir()
        for name, text in CORPUS.items():
            (docs / name).write_text(text, encoding="utf-8")
        spec = root / "spec.json"
        spec.write_text(
            json.dumps(
                {
                    "persona": {
                        "name": "Maya",
                        "description": "First-time home buyer and nurse on shifts.",
                        "expertise": "novice",
                        "goals": ["buy a flat"],
                    },
                    "goal": {"name": "qa", "params": {"num_questions": 4}},
                    "data": [{"path": str(docs)}],
                    "run": {"max_iterations": 1, "max_concurrency": 2},
                    "llm": {"provider": "fake"},
                }
            )
        )
        expected, seconds = reference(root, spec, args.latency)
        print(f"uninterrupted run: {len(expected)} accepted pairs in {seconds:.1f} s")
        rng = random.Random(args.seed)
        good = 0
        for index in range(args.trials):
            at = rng.uniform(0.2, seconds)
            trial = kill_trial(root, spec, args.latency, at, expected)
            good += trial.same_pairs
            how = "resumed" if trial.resumed else ("rerun" if not trial.id_printed else "-")
            print(
                f"trial {index + 1:2d}: killed at {at:5.1f} s, id shown {trial.id_printed!s:5}, "
                f"{how:7}, same pairs {trial.same_pairs} {trial.detail}",
                flush=True,
            )
        print(f"{good} of {args.trials} killed runs ended with the uninterrupted run's pairs")


if __name__ == "__main__":
    main()
