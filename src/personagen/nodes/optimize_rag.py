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

from personagen.data.rag_sweep import ChunkingParams, EvalItem, SweepGrid, sweep
from personagen.graph.context import RunContext
from personagen.nodes._instrument import instrumented
from personagen.state.graph import State
from personagen.state.metadata import Event

# Wall time the sweep may take; what does not fit is skipped and reported in the result.
TIME_BUDGET_S = 120.0


@instrumented("optimize_rag")
async def optimize_rag(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Sweep chunk size, overlap, splitter, retriever and top_k; return `{"rag": ...}`.

    The goal's own chunking (`chunk_size`, `chunk_overlap`, recursive) is swept too, as the
    baseline, and is what the export falls back to when the sweep is skipped.
    """
    ctx, goal = runtime.context, state["goal"]
    default = ChunkingParams(
        chunk_size=int(goal.param("chunk_size")),
        chunk_overlap=int(goal.param("chunk_overlap")),
        splitter="recursive",
    )
    items = [
        EvalItem(question_id=pair.id, question=pair.question, spans=pair.spans)
        for pair in state.get("pairs", {}).values()
        if pair.status == "accepted" and pair.spans
    ]
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
    result = await asyncio.to_thread(
        sweep,
        texts,
        items,
        grid=SweepGrid(),
        embeddings=ctx.llm.embeddings,
        language=persona.language if persona is not None else "en",
        time_budget_s=TIME_BUDGET_S,
        baseline=default,
    )
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
