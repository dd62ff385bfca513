"""Node: sweep chunking and retrieval settings against the accepted answers' source spans.

Runs after the tuning loop, before `compose_output`: the accepted pairs are a retrieval eval
set with character-level ground truth, so the sweep (`personagen.data.rag_sweep`) can pick
the chunking and retrieval that best hand a reader the text the answers rest on. No model
is called; embeddings, when the run has them, are used for the `embedding` and `hybrid`
retrievers. The result goes to `state["rag"]`, which `compose_output` writes to `rag/`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph.runtime import Runtime

from personagen.data.rag_sweep import ChunkingParams, EvalItem, SweepGrid, restrict, sweep
from personagen.graph.context import RunContext
from personagen.nodes._instrument import instrumented
from personagen.state.graph import State
from personagen.state.metadata import Event

# Wall time the sweep may take; what does not fit is skipped and reported in the result.
TIME_BUDGET_S = 120.0
_START_DELAY_S = 0.05


def _inputs(state: State, ctx: RunContext) -> tuple[dict[str, str], list[Event], dict[str, Any]]:
    """The documents' texts, warnings about missing ones, and the sweep's settings."""
    goal = state["goal"]
    default = ChunkingParams(
        chunk_size=int(goal.param("chunk_size")),
        chunk_overlap=int(goal.param("chunk_overlap")),
        splitter="recursive",
    )
    events: list[Event] = []
    texts: dict[str, str] = {}
    for ref in state.get("documents", []):
        try:
            texts[ref.id] = ctx.store.get_text(ref.id)
        except KeyError:
            events.append(
                Event(
                    level="warning",
                    stage="optimize_rag",
                    message=f"document {ref.source!r} is not in the chunk store; not swept",
                    item=ref.id,
                )
            )
    persona = state.get("persona")
    settings: dict[str, Any] = {
        "grid": SweepGrid(),
        "embeddings": ctx.llm.embeddings,
        "language": persona.language if persona is not None else "en",
        "time_budget_s": TIME_BUDGET_S,
        "baseline": default,
    }
    return texts, events, settings


def _eval_items(state: State, statuses: tuple[str, ...]) -> list[EvalItem]:
    return [
        EvalItem(question_id=pair.id, question=pair.question, spans=pair.spans)
        for pair in state.get("pairs", {}).values()
        if pair.status in statuses and pair.spans
    ]


def prefetch_sweep(state: State, ctx: RunContext) -> None:
    """Start the sweep over every answered pair with spans in a worker thread, now.

    Called once the answers of a pass are in: the accepted pairs are a subset of them, and a
    question's retrieval scores do not depend on the other questions, so `optimize_rag` gets
    its result by re-aggregating this one (`rag_sweep.restrict`) instead of sweeping after
    the loop. Model calls are I/O waits the sweep's CPU work fills; with the in-process
    embedded model they are CPU work themselves, so nothing is started then.
    """
    if _runs_in_process(ctx):
        return
    running = ctx.prefetched_sweep
    if running is not None and not running.done():
        return  # one sweep at a time (a thread cannot be stopped); the node sweeps if stale
    texts, _, settings = _inputs(state, ctx)
    items = _eval_items(state, ("answered", "accepted", "failing", "judged"))
    if not items or not texts:
        return

    async def later() -> Any:
        # Not during the step change that follows this node (LangGraph plans the judges'
        # tasks and writes the checkpoint then): a thread holding the GIL would slow it.
        await asyncio.sleep(_START_DELAY_S)
        return await asyncio.to_thread(sweep, texts, items, **settings, stop=ctx.background_stop)

    future = asyncio.ensure_future(later())
    future.add_done_callback(lambda f: f.cancelled() or f.exception())  # reported on use
    ctx.prefetched_sweep = future


def _runs_in_process(ctx: RunContext) -> bool:
    return type(ctx.llm.chat).__name__ == "EmbeddedChatModel"


@instrumented("optimize_rag")
async def optimize_rag(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Sweep chunk size, overlap, splitter, retriever and top_k; return `{"rag": ...}`.

    The goal's own chunking (`chunk_size`, `chunk_overlap`, recursive) is swept too, as the
    baseline, and is what the export falls back to when the sweep is skipped.
    """
    ctx = runtime.context
    texts, events, settings = _inputs(state, ctx)
    items = _eval_items(state, ("accepted",))
    result = None
    early, ctx.prefetched_sweep = ctx.prefetched_sweep, None
    if early is not None:
        try:
            result = restrict(await asyncio.shield(early), items)
        except Exception:  # noqa: BLE001 - the sweep below runs again and reports it
            result = None
    if result is None:
        result = await asyncio.to_thread(sweep, texts, items, **settings)
    default = settings["baseline"]
    rag = result.to_dict() | {"default_chunking": default.model_dump(mode="json")}
    if result.status == "skipped":
        events.append(
            Event(
                level="info",
                stage="optimize_rag",
                message=f"RAG sweep skipped: {result.reason}; rag/ uses the goal's chunking",
                item=None,
            )
        )
    elif result.timing.budget_exhausted:
        events.append(
            Event(
                level="warning",
                stage="optimize_rag",
                message=f"RAG sweep stopped at its {TIME_BUDGET_S:g} s budget after "
                f"{result.settings_evaluated} of {result.settings_planned} settings",
                item=None,
            )
        )
    return {"rag": rag, "events": events}
