"""Graph + checkpoint overhead: a fake model with fixed latency, 40 questions.

Prints the wall time (median of --repeat runs), the ideal (sum of model latency / concurrency), the
overhead ratio, where the wall time went along the critical path, and the same runs with
checkpoints in memory instead of the SQLite file.
Usage: python benchmarks/overhead.py [--questions 40] [--latency 0.05] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

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


def make_spec(root: Path, questions: int, concurrency: int, cache: bool) -> dict[str, Any]:
    return {
        "persona": {"name": "Bench", "description": "A buyer", "expertise": "novice"},
        "goal": {
            "name": "qa",
            "params": {
                "num_questions": questions,
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
        "run": {"max_iterations": 1, "max_concurrency": concurrency, "cache": cache},
        "llm": {"provider": "fake"},
    }


async def one_run(
    questions: int,
    latency: float,
    concurrency: int,
    cache: bool,
    *,
    in_memory: bool = False,
    jitter: float = 0.0,
) -> tuple[float, float, Any]:
    """One run in a fresh directory: (wall s, model latency summed, details).

    Details: (result, stages, start, end, model calls).

    `in_memory`: checkpoints in LangGraph's `InMemorySaver` (serialized the same way, never
    written to disk) instead of the SQLite file, to measure what the file costs.
    """
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "docs").mkdir()
        corpus(root / "docs", questions)
        model = FakeChatModel(latency=latency, latency_jitter=jitter)
        extra: dict[str, Any] = {}
        if in_memory:
            from langgraph.checkpoint.memory import InMemorySaver

            from personagen.graph.checkpoint import serializer

            extra["checkpointer"] = InMemorySaver(serde=serializer())
        started, epoch = time.perf_counter(), time.time()
        result = await arun(
            make_spec(root, questions, concurrency, cache),
            chat_model=model,
            out_dir=root / "out",
            state_dir=root / "state",
            **extra,
        )
        wall = time.perf_counter() - started
        stages = result.metadata["stages"]
    slept = sum(model._latency(i) for i in range(len(model.calls)))
    return wall, slept, (result, stages, epoch, epoch + wall, len(model.calls))


class CheckpointTimer:
    """Time awaited in the SQLite checkpointer's writes (wraps the class's methods)."""

    def __init__(self) -> None:
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        self.seconds = 0.0
        self.writes = 0
        for name in ("aput", "aput_writes"):
            original = getattr(AsyncSqliteSaver, name)
            setattr(AsyncSqliteSaver, name, self._timed(original))

    def _timed(self, original: Any) -> Any:
        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started
                self.writes += 1

        return timed


MODEL_NODES = {"compose_persona", "generate_questions", "answer", "evaluate", "refine"}


def _union(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def breakdown(stages: list[dict[str, Any]], started: float, ended: float) -> dict[str, float]:
    """Split the wall time along the run's critical path.

    Returns seconds: `model_nodes` (time some node that calls the model was running; answer
    tasks judge their own pair, so answer and evaluate overlap), `other_nodes`, `sweep`
    (optimize_rag, part of other_nodes), `between_steps` (time no node was running between
    the first and the last: LangGraph's scheduling and the steps' checkpoint writes), `setup`
    (before the first node) and `finish` (compose_output, the bundle, the run store).
    """
    spans: dict[str, list[float]] = {}
    for stage in stages:
        span = spans.setdefault(stage["node"], [stage["started"], 0.0])
        span[0] = min(span[0], stage["started"])
        span[1] = max(span[1], stage["started"] + stage["seconds"])
    model = _union([(a, b) for n, (a, b) in spans.items() if n in MODEL_NODES])
    other = _union([(a, b) for n, (a, b) in spans.items() if n not in MODEL_NODES])
    every = _union([(a, b) for a, b in spans.values()])
    sweep = spans.get("optimize_rag", [0.0, 0.0])
    return {
        "model_nodes": sum(b - a for a, b in model),
        "other_nodes": sum(b - a for a, b in other),
        "sweep": sweep[1] - sweep[0],
        "between_steps": sum(b[0] - a[1] for a, b in zip(every, every[1:], strict=False)),
        "setup": every[0][0] - started,
        "finish": ended - every[-1][1],
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--questions", type=int, default=40)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--no-cache", action="store_true", help="Disable the response cache.")
    parser.add_argument("--stages", action="store_true", help="Print when each node ran.")
    parser.add_argument("--repeat", type=int, default=3, help="Runs measured (median shown).")
    parser.add_argument(
        "--jitter",
        type=float,
        default=0.0,
        help="Latency of each call x U[1-j, 1+j] (real endpoints vary; 0: fixed, the worst "
        "case for calls finishing together).",
    )
    args = parser.parse_args()
    cache = not args.no_cache
    # One-off costs of a process (imports: ragas ~4 s, bm25s, SQLAlchemy; loading the
    # language identifier) are paid by a small first run, as a long-running service would.
    first = time.perf_counter()
    await one_run(4, 0.0, args.concurrency, cache)
    warm_up = time.perf_counter() - first

    timer = CheckpointTimer()
    runs = []  # (wall, latency sum, details, cpu), SQLite checkpoints; memory-checkpoint walls
    memory_walls = []
    for _ in range(args.repeat):
        cpu = time.process_time()
        wall, slept, details = await one_run(
            args.questions, args.latency, args.concurrency, cache, jitter=args.jitter
        )
        runs.append((wall, slept, details, time.process_time() - cpu))
        in_memory = await one_run(
            args.questions, args.latency, args.concurrency, cache, in_memory=True,
            jitter=args.jitter,
        )  # fmt: skip
        memory_walls.append(in_memory[0])
    timer.seconds /= args.repeat
    timer.writes //= args.repeat
    runs.sort(key=lambda run: run[0])
    wall, slept, (result, stages, started, ended, calls), cpu = runs[len(runs) // 2]  # median
    memory_wall = sorted(memory_walls)[len(memory_walls) // 2]
    ideal = slept / args.concurrency
    parts = breakdown(stages, started, ended)
    graph = parts["between_steps"]

    def share(seconds: float) -> str:
        return f"{seconds:5.2f} s  {seconds / ideal:+7.1%} of the ideal"

    print(f"first run in the process:   {warm_up:.2f} s (imports, model loading; not counted)")
    print(f"questions answered:         {len(result.pairs)}")
    jitter = f" +/- {args.jitter:.0%}" if args.jitter else ""
    print(f"LLM calls:                  {calls} at {args.latency * 1000:g} ms{jitter}")
    print(f"concurrency:                {args.concurrency}")
    print(f"CPU time of the process:    {cpu:.2f} s")
    print(
        f"wall time (median of {args.repeat}):    {wall:.2f} s  (all: "
        + ", ".join(f"{run[0]:.2f}" for run in runs)
        + ")"
    )
    print(f"ideal (latency sum / conc): {ideal:.2f} s")
    print(f"overhead ratio:             {(wall - ideal) / ideal:+.1%}")
    print("where the wall time went, along the critical path:")
    beyond = parts["model_nodes"] - ideal
    print(
        f"  model-calling nodes       {parts['model_nodes']:5.2f} s  = the ideal {beyond:+.2f} s "
        f"({beyond / ideal:+.1%}: CPU per call, slots idle at phase ends)"
    )
    print(f"  nodes without model calls {share(parts['other_nodes'])}")
    print(f"    of which the RAG sweep  {share(parts['sweep'])}")
    print(f"  before the first node     {share(parts['setup'])}  (spec, stores, checkpointer)")
    print(f"  after the last timed node {share(parts['finish'])}  (bundle, report, run store)")
    print(f"  between graph steps       {share(graph)}")
    print(
        f"graph + checkpoint overhead (between steps): {graph:.3f} s = {graph / ideal:+.1%} "
        f"of the ideal; checkpoint writes awaited: {timer.writes} taking {timer.seconds:.2f} s "
        "in all (mostly overlapping model waits)"
    )
    print(
        f"same runs, checkpoints in memory instead of the SQLite file: {memory_wall:.2f} s "
        f"(the file: {wall - memory_wall:+.2f} s = {(wall - memory_wall) / ideal:+.1%})"
    )
    if args.stages:
        print_stages(stages)


def print_stages(stages: list[dict[str, Any]]) -> None:
    """Per node: tasks, first start / last end (s from the run's start), summed seconds."""
    spans: dict[str, list[float]] = {}
    t0 = min(s["started"] for s in stages)
    for s in stages:
        span = spans.setdefault(s["node"], [0, 1e18, 0.0, 0.0, 0])
        span[0] += 1
        span[1] = min(span[1], s["started"] - t0)
        span[2] = max(span[2], s["started"] - t0 + s["seconds"])
        span[3] += s["seconds"]
        span[4] += s["llm_calls"]
    print(f"{'node':24s} {'tasks':>5s} {'start':>6s} {'end':>6s} {'sum':>7s} {'calls':>5s}")
    for node, (n, start, end, total, calls) in spans.items():
        print(f"{node:24s} {n:5d} {start:6.2f} {end:6.2f} {total:7.2f} {calls:5d}")


if __name__ == "__main__":
    asyncio.run(main())
