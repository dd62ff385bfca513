"""Progress events (issue 16, 5): counts per stage, tokens against the estimate, an ETA."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import personagen
from personagen.progress import ProgressTracker, describe


def _custom(stage: str, event: str, tokens: int = 0, iteration: int = 1) -> dict[str, Any]:
    data = {"stage": stage, "event": event, "iteration": iteration, "tokens": tokens}
    return {"mode": "custom", "data": data}


def test_tracker_counts_a_fan_out_and_projects_the_eta() -> None:
    now = [0.0]
    tracker = ProgressTracker(expected_tokens=1000, clock=lambda: now[0])
    for _ in range(4):
        tracker.feed(_custom("answer", "start"))
    now[0] = 10.0
    tracker.feed(_custom("answer", "end", tokens=250))
    snap = tracker.feed(_custom("answer", "end", tokens=250))
    assert snap is not None
    assert (snap["stage"], snap["done"], snap["total"], snap["tokens"]) == ("answer", 2, 4, 500)
    assert snap["eta"] == 10.0  # half the estimate in 10 s: 10 s to go
    assert describe(snap) == "answered 2/4 (iteration 1) · 500 / ~1,000 tokens · ETA 10 s"
    assert tracker.feed({"mode": "updates", "data": {"answer": {}}}) is None


def test_no_estimate_no_eta() -> None:
    tracker = ProgressTracker()
    snap = tracker.feed(_custom("generate_questions", "end", tokens=90))
    assert snap is not None and snap["eta"] is None
    assert "ETA" not in describe(snap) and "90 tokens" in describe(snap)


def test_astream_and_the_callback_get_the_same_progress(tmp_path: Path, make_spec: Any) -> None:
    spec = make_spec(run={"max_iterations": 1})
    seen: list[dict[str, Any]] = []

    async def stream() -> list[dict[str, Any]]:
        return [
            e
            async for e in personagen.astream(
                spec, state_dir=tmp_path / "a", out_dir=tmp_path / "o", expected_tokens=20_000
            )
            if e["type"] == "progress"
        ]

    streamed = asyncio.run(stream())
    personagen.run(
        spec,
        state_dir=tmp_path / "b",
        out_dir=tmp_path / "o2",
        expected_tokens=20_000,
        progress=lambda e: seen.append(e["data"]) if e["mode"] == "progress" else None,
    )
    answered = [e for e in streamed if e["stage"] == "answer"]
    assert answered and answered[-1]["done"] == answered[-1]["total"] >= 3
    tokens = [e["tokens"] for e in streamed]
    assert tokens == sorted(tokens) and tokens[-1] > 0
    assert any(e["eta"] is not None for e in streamed)

    def final_counts(events: list[dict[str, Any]]) -> dict[Any, tuple[int, int]]:
        return {(e["stage"], e["iteration"]): (e["done"], e["total"]) for e in events}

    assert final_counts(streamed) == final_counts(seen)
    assert streamed[-1]["tokens"] == seen[-1]["tokens"]
