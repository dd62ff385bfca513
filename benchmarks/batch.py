"""Batch wall time: 24 runs (a fake model with fixed latency) on the local and Ray backends.

Each backend runs the same personas x documents batch, with new run ids, against two lower
bounds, measured from one run alone (warm, in this process):
  - waves: ceil(runs / runs-at-once) x the time of one run alone (latency plus compute);
  - cpu: runs x the compute of one run (latency 0) / the processes doing it (local: 1;
    ray: min(actors, CPUs)); the fake model's runs cost real CPU (Ragas' parsing, ours);
and "x ideal" = wall / the larger of the two. Ray's cluster start is timed apart; its
actors start inside the batch (a new worker process imports LangGraph and Ragas).

    python benchmarks/batch.py [--runs 24] [--latency 0.3] [--db postgresql://...]

Local runs on SQLite, and on Postgres when a database is given (--db, or
$PERSONAGEN_BATCH_DB_URL / $PERSONAGEN_TEST_PG_URL); Ray needs the database and the `ray`
extra, and is skipped otherwise. Ray's start-up is timed apart from the batch. The
benchmark deletes the checkpoints it wrote.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from personagen.api import arun  # noqa: E402
from personagen.batch import ModelRef, arun_batch, parse_batch  # noqa: E402
from personagen.batch._checkpoints import normalize_checkpoint  # noqa: E402
from personagen.llm.fake import FakeChatModel  # noqa: E402

TOPICS = ["deposits", "fees", "surveys", "mortgages", "insurance", "taxes"]
PERSONAS = [
    "First-time buyer working night shifts",
    "Mortgage broker explaining products",
    "Retired teacher downsizing",
    "Engineer buying with a partner",
    "Landlord buying a second flat",
    "Student saving for a deposit",
]
# Ray's dashboard asks cloud metadata endpoints which cloud it is on, even with usage stats
# off; a closed local proxy keeps that on 127.0.0.1 (the fake model needs no network).
NO_OUTSIDE_HTTP = {
    k: v
    for name, v in (
        ("http_proxy", "http://127.0.0.1:9"),
        ("https_proxy", "http://127.0.0.1:9"),
        ("no_proxy", "127.0.0.1,localhost,::1"),
    )
    for k in (name, name.upper())
}


def write_corpus(folder: Path, documents: int) -> list[str]:
    names = []
    for index in range(documents):
        topic = TOPICS[index % len(TOPICS)]
        text = (
            f"# {topic.title()}\n\n"
            f"Most lenders ask buyers about {topic} early in the application process. "
            f"Planning {topic} carefully usually saves money over the life of the loan.\n\n"
            f"Advisers often explain {topic} with worked examples for new buyers.\n"
        )
        (folder / f"{topic}-{index}.md").write_text(text, encoding="utf-8")
        names.append(f"docs/{topic}-{index}.md")
    return names


def plan_for(root: Path, batch_id: str, runs: int) -> Any:
    documents = 4 if runs % 4 == 0 else 1
    personas = math.ceil(runs / documents)
    data = {
        "batch_id": batch_id,
        "personas": [PERSONAS[i % len(PERSONAS)] + f" #{i}" for i in range(personas)],
        "data": [f"docs/{p.name}" for p in sorted((root / "docs").glob("*.md"))][:documents],
        "goal": {"name": "qa", "params": {"num_questions": 3}},
        "run": {"max_iterations": 1, "max_concurrency": 4, "cache": False},
        "llm": {"provider": "fake"},
    }
    plan = parse_batch(data, base_dir=root)
    return plan.__class__(plan.batch_id, plan.items[:runs], plan.source)


async def one_run(plan: Any, root: Path, latency: float, tag: str) -> float:
    item = plan.items[0]
    started = time.perf_counter()
    result = await arun(
        item.spec,
        run_id=f"single-{tag}-{secrets.token_hex(3)}",
        out_dir=root / "single",
        state_dir=root / "single-state",
        chat_model=FakeChatModel(latency=latency),
    )
    assert result.status == "done", result.status
    return time.perf_counter() - started


@contextlib.contextmanager
def scoped_env(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, old in saved.items():
            if old is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = old


async def delete_threads(db: str, run_ids: list[str]) -> None:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    async with AsyncPostgresSaver.from_conn_string(db) as saver:
        for run_id in run_ids:
            await saver.adelete_thread(run_id)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=24)
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument("--local-concurrency", type=int, default=24)
    parser.add_argument("--ray-actors", type=int, default=2)
    parser.add_argument("--ray-concurrency", type=int, default=12)
    parser.add_argument("--db", default=None, help="Postgres URL for the Postgres/Ray rows.")
    args = parser.parse_args()
    db = normalize_checkpoint(
        args.db
        or os.environ.get("PERSONAGEN_BATCH_DB_URL")
        or os.environ.get("PERSONAGEN_TEST_PG_URL")
    )
    model = ModelRef("personagen.llm.fake:FakeChatModel", {"latency": args.latency})
    rows: list[tuple[str, int, int, float, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "docs").mkdir()
        write_corpus(root / "docs", 4)
        probe = plan_for(root, "probe", 1)
        await one_run(probe, root, 0.0, "warmup")  # imports, ragas set-up: one-off costs
        alone = min([await one_run(probe, root, args.latency, "alone") for _ in range(3)])
        compute = min([await one_run(probe, root, 0.0, "compute") for _ in range(3)])
        depth = max(1, round((alone - compute) / args.latency)) if args.latency else 0
        print(
            f"one run alone: {alone:.2f} s (compute {compute:.2f} s, ~{depth} sequential "
            f"model calls x {args.latency} s)"
        )

        async def measure(name: str, slots: int, procs: int, **kwargs: Any) -> list[str]:
            plan = plan_for(root, f"bench-{name}-{secrets.token_hex(3)}", args.runs)
            started = time.perf_counter()
            cpu = time.process_time()
            report = await arun_batch(
                plan, out_dir=root / "out", state_dir=root / f"state-{name}", chat_model=model,
                **kwargs,
            )  # fmt: skip
            wall = time.perf_counter() - started
            assert report.status == "done", [r["error"] for r in report.runs if r["error"]]
            waves = math.ceil(args.runs / slots) * alone
            rows.append((name, slots, procs, wall, waves, args.runs * compute / procs))
            print(f"  {name}: {wall:.2f} s wall, driver CPU {time.process_time() - cpu:.1f} s")
            return [item.run_id for item in plan.items]

        await measure("local-sqlite", args.local_concurrency, 1, concurrency=args.local_concurrency)
        if db is None:
            print("no database given: skipping local-postgres and ray")
        else:
            written = await measure(
                "local-postgres",
                args.local_concurrency,
                1,
                concurrency=args.local_concurrency,
                checkpoint=db,
            )
            await delete_threads(db, written)
            try:
                from personagen.batch.ray_backend import start_ray

                started = time.perf_counter()
                with scoped_env(NO_OUTSIDE_HTTP):
                    ray, _ = start_ray("local")
                print(f"ray.init (local cluster): {time.perf_counter() - started:.2f} s")
            except Exception as exc:  # noqa: BLE001 - the extra is optional
                print(f"ray unavailable ({exc}): skipping the ray row")
            else:
                try:
                    slots = args.ray_actors * args.ray_concurrency
                    procs = min(args.ray_actors, os.cpu_count() or 1)
                    written = await measure(
                        "ray", slots, procs, backend="ray", checkpoint=db,
                        concurrency=args.ray_concurrency, ray_actors=args.ray_actors,
                    )  # fmt: skip
                    await delete_threads(db, written)
                finally:
                    ray.shutdown()

    print(f"\n{args.runs} runs, fake model latency {args.latency} s, {os.cpu_count()} CPUs")
    header = ("backend", "at once", "procs", "wall s", "waves s", "cpu s", "x ideal")
    print("{:<16}{:>8}{:>6}{:>9}{:>9}{:>8}{:>9}".format(*header))
    for name, slots, procs, wall, waves, cpu in rows:
        print(
            f"{name:<16}{slots:>8}{procs:>6}{wall:>9.2f}{waves:>9.2f}{cpu:>8.2f}"
            f"{wall / max(waves, cpu):>9.2f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
