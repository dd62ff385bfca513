"""Node: join the answer fan-out; report grounding problems before judging."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from personagen.graph.context import RunContext
from personagen.nodes._instrument import _emit, instrumented
from personagen.state.graph import State
from personagen.state.metadata import Event


@instrumented("collect_answers")
async def collect_answers(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Warn about quotes the model gave that are not in the sources (never silently kept)."""
    iteration = state["iteration"]
    fresh = [
        p for p in state["pairs"].values() if p.iteration == iteration and p.status == "answered"
    ]
    events = [
        Event(
            level="warning",
            stage="answer",
            message=f"{len(p.unmatched_quotes)} quote(s) not found in the sources: "
            + "; ".join(q[:80] for q in p.unmatched_quotes),
            item=p.id,
        )
        for p in fresh
        if p.unmatched_quotes
    ]
    events += [
        Event(level="warning", stage="answer", message=f"answering failed: {p.error}", item=p.id)
        for p in state["pairs"].values()
        if p.iteration == iteration and p.error and p.status == "failing"
    ]
    _emit(
        {
            "stage": "answer",
            "event": "summary",
            "answered": sum(1 for p in fresh if p.answerable),
            "unanswerable": sum(1 for p in fresh if not p.answerable),
        }
    )
    from personagen.nodes.optimize_rag import prefetch_sweep

    prefetch_sweep(state, runtime.context)  # while the judges work
    return {"events": events}
