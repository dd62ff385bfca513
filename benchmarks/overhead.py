"""Graph + checkpoint overhead: a fake model with fixed latency, 40 questions.

Prints the wall time, the ideal (sum of model latency / concurrency) and the overhead ratio.
Usage: python benchmarks/overhead.py [--questions 40] [--latency 0.05] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")

from personagen.api import arun  # noqa: E402
from personagen.llm.fake import FakeChatModel  # noqa: E402

SENTENCE = (
    "Topic {i} explains how lenders assess deposit size number {i} and monthly income for buyers."
)


def corpus(directory: Path, questions: int) -> None:
    for d in range(4):
        lines = [SENTENCE.format(i=d * 1000 + i) for i in range(questions)]
        (directory / f"doc{d}.md").write_text("\n\n".join(lines), encoding="utf-8")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--questions", type=int, default=40)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--no-cache", action="store_true", help="Disable the response cache.")
    args = parser.parse_args()
    # Import costs (ragas ~4 s, the graph's modules) are one-off, not graph overhead.
    import ragas  # noqa: F401

    import personagen.evaluators.ragas_metrics as ragas_metrics
    import personagen.graph.builder  # noqa: F401

    ragas_metrics._adapter_classes()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "docs").mkdir()
        corpus(root / "docs", args.questions)
        spec = {
            "persona": {"name": "Bench", "description": "A buyer", "expertise": "novice"},
            "goal": {
                "name": "qa",
                "params": {
                    "num_questions": args.questions,
                    "questions_per_excerpt": 5,
                    "excerpt_chars": 1200,
                    "dedup_threshold": 99,
                },
                "baseline": {
                    "faithfulness": 0.0,
                    "answer_relevancy": 0.0,
                    "context_precision": 0.0,
                    "persona_fit": 0.0,
                },
            },
            "data": [{"path": str(root / "docs")}],
            "run": {
                "max_iterations": 1,
                "max_concurrency": args.concurrency,
                "cache": not args.no_cache,
            },
            "llm": {"provider": "fake"},
        }
        model = FakeChatModel(latency=args.latency)
        started = time.perf_counter()
        result = await arun(spec, chat_model=model, out_dir=root / "out", state_dir=root / "state")
        wall = time.perf_counter() - started
    calls = len(model.calls)
    ideal = calls * args.latency / args.concurrency
    print(f"questions answered:        {len(result.pairs)}")
    print(f"LLM calls:                 {calls}")
    print(f"concurrency:               {args.concurrency}")
    print(f"wall time:                 {wall:.2f} s")
    print(f"ideal (latency sum / conc): {ideal:.2f} s")
    print(f"overhead ratio:            {(wall - ideal) / ideal:+.1%}")


if __name__ == "__main__":
    asyncio.run(main())
