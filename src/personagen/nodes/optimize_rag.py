"""Node: sweep chunking and retrieval settings against the accepted answers' source spans.

Runs after the tuning loop, before `compose_output`: the accepted pairs are a retrieval eval
set with character-level ground truth, so the sweep (`personagen.data.rag_sweep`) can pick
the chunking and retrieval that best hand a reader the text the answers rest on. No model
is called; embeddings, when the run has them, are used for the `embedding` and `hybrid`
retrievers. The result goes to `state["rag"]`, which `compose_output` writes to `rag/`.

The goal's `rag_sweep_budget_s` bounds the sweep's wall time in all (an early sweep and the
node's own together), as a hard limit. Per-question results are cached next to the chunk
store (`rag_sweep.sqlite`, when the run's `cache` is on), so an unchanged rerun, and the
node's sweep of the accepted pairs after an early sweep of every answered pair, reuse them.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from langgraph.runtime import Runtime

from personagen.data.rag_sweep import (
    ChunkingParams,
    EvalItem,
    SweepCache,
    SweepGrid,
    SweepResult,
    restrict,
    sweep,
)
from personagen.graph.context import RunContext
from personagen.nodes._instrument import instrumented
from personagen.state.graph import State
from personagen.state.metadata import Event

# Wall time the sweep may take when the goal does not say (`rag_sweep_budget_s`); what does
# not fit is skipped and reported in the result.
TIME_BUDGET_S = 120.0
_GRID_TOP_K = (1, 3, 5)
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
    own_k = goal.params.get("top_k")
    top_k = {*_GRID_TOP_K, *([own_k] if isinstance(own_k, int) and own_k > 0 else [])}
    settings: dict[str, Any] = {
        # The run's own top_k is swept too: its row says how the run's retrieval did.
        "grid": SweepGrid(top_k=sorted(top_k)),
        "embeddings": ctx.llm.embeddings,
        "language": persona.language if persona is not None else "en",
        "time_budget_s": float(goal.params.get("rag_sweep_budget_s") or TIME_BUDGET_S),
        "baseline": default,
    }
    return texts, events, settings


def _cache_path(state: State, ctx: RunContext) -> Path | None:
    """The sweep cache's file, next to the chunk store; None without one or with cache off."""
    spec = state.get("spec")
    if spec is not None and not spec.run.cache:
        return None
    store_path = getattr(ctx.store, "path", ":memory:")
    if store_path == ":memory:":
        return None
    return Path(store_path).parent / "rag_sweep.sqlite"


def _sweep(
    texts: dict[str, str], items: list[EvalItem], cache_path: Path | None, **settings: Any
) -> SweepResult:
    """`sweep` with the run's cache (opened in the calling thread, closed after)."""
    if cache_path is None:
        return sweep(texts, items, **settings)
    with SweepCache(cache_path) as cache:
        return sweep(texts, items, cache=cache, **settings)


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

    cache_path = _cache_path(state, ctx)

    async def later() -> Any:
        # Not during the step change that follows this node (LangGraph plans the judges'
        # tasks and writes the checkpoint then): a thread holding the GIL would slow it.
        await asyncio.sleep(_START_DELAY_S)
        return await asyncio.to_thread(
            _sweep, texts, items, cache_path, **settings, stop=ctx.background_stop
        )

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
    budget = settings["time_budget_s"]
    result = None
    spent = 0.0
    early, ctx.prefetched_sweep = ctx.prefetched_sweep, None
    if early is not None:
        clock = time.perf_counter()
        try:
            # The early sweep ends by its own (hard) budget; its time counts against ours.
            prefetched = await asyncio.shield(early)
            spent = prefetched.timing.seconds
            result = restrict(prefetched, items)
        except Exception:  # noqa: BLE001 - the sweep below runs again and reports it
            spent = time.perf_counter() - clock
            result = None
    if result is None:
        # What the early sweep computed is in the cache: only the rest costs time here.
        settings["time_budget_s"] = max(budget - spent, 1e-3)
        result = await asyncio.to_thread(_sweep, texts, items, _cache_path(state, ctx), **settings)
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
                message=f"RAG sweep stopped at its {budget:g} s budget after "
                f"{result.settings_evaluated} of {result.settings_planned} settings",
                item=None,
            )
        )
    return {"rag": rag, "events": events}
