"""Node: the summary loop's first pass: take notes on the data (map), merge, write (reduce).

The data is cut into excerpts of `map_chars` (a shorter document is one excerpt). From each,
the model notes the points that matter to the persona, each with the sentence it rests on
copied word for word; a note whose quote is not in the excerpt is kept in the record but
never summarized. When there are more notes than `reduce_max_notes`, batches of notes are
merged (combine) until they fit. The summary is then written from the notes alone.
"""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph.runtime import Runtime

from personagen.errors import StructuredOutputError
from personagen.graph.context import RunContext
from personagen.nodes._goal_common import (
    LoopState,
    ask,
    goal_messages,
    grounded_quote,
    to_context,
    write_draft,
)
from personagen.nodes._instrument import instrumented
from personagen.prompts.schemas_goals import SummaryNotesOut
from personagen.state.documents import Chunk
from personagen.state.items import RetrievedContext
from personagen.state.metadata import Event
from personagen.state.outputs import SummaryDraft, SummaryNote


def _excerpt_context(excerpt: Chunk) -> RetrievedContext:
    return RetrievedContext(
        chunk_id=excerpt.id,
        doc_id=excerpt.doc_id,
        start=excerpt.start,
        end=excerpt.end,
        score=1.0,
        text=excerpt.text,
    )


@instrumented("summarize")
async def summarize(state: LoopState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Take notes per excerpt, merge them if there are too many, and write the summary."""
    ctx, goal, persona = runtime.context, state["goal"], state["persona"]
    doc_ids = [d.id for d in state["documents"]]
    sources = {d.id: d.source for d in state["documents"]}
    max_notes = min(8, int(goal.param("max_notes")))
    reduce_max = max(2, int(goal.param("reduce_max_notes")))
    excerpts = ctx.store.chunks(
        doc_ids, chunk_size=int(goal.param("map_chars")), chunk_overlap=0, splitter="recursive"
    )
    events: list[Event] = []

    async def take_notes(excerpt: Chunk) -> SummaryNotesOut:
        messages = goal_messages(
            ctx,
            goal,
            persona,
            "map",
            excerpt=excerpt.text,
            source=sources.get(excerpt.doc_id, excerpt.doc_id),
            max_notes=max_notes,
        )
        return await ask(ctx, messages, SummaryNotesOut)

    results = await asyncio.gather(*(take_notes(e) for e in excerpts), return_exceptions=True)
    notes: list[SummaryNote] = []
    for excerpt, result in zip(excerpts, results, strict=True):
        if isinstance(result, StructuredOutputError):
            events.append(
                Event(
                    level="warning",
                    stage="summarize",
                    message=f"no notes from excerpt {excerpt.id}: {result}",
                    item=excerpt.id,
                )
            )
            continue
        if isinstance(result, BaseException):
            raise result
        context = _excerpt_context(excerpt)
        for out in result.notes[:max_notes]:
            point, quote = out.point.strip(), out.quote.strip()
            if not point:
                continue
            # Small models often copy the sentence into the point and garble the quote.
            quote, spans = grounded_quote([quote, point], [context], [excerpt.doc_id], ctx)
            notes.append(
                SummaryNote(
                    id=f"n{len(notes) + 1}", point=point, quote=quote, group=excerpt.id, spans=spans
                )
            )
    _warn_ungrounded(notes, events)
    usable = [n for n in notes if n.grounded]

    level = 0
    while len(usable) > reduce_max:
        level += 1
        merged = await _combine(ctx, state, usable, reduce_max, level, len(notes), events)
        notes.extend(merged)
        if not merged or len(merged) >= len(usable):
            events.append(
                Event(
                    level="warning",
                    stage="summarize",
                    message=f"merging {len(usable)} notes did not reduce them; the summary is "
                    "written from all of them",
                )
            )
            break
        usable = merged

    used = {n.id for n in usable}
    notes = [n.model_copy(update={"used": n.id in used}) for n in notes]
    if not usable:
        draft = SummaryDraft(
            status="rejected",
            iteration=state["iteration"],
            error="no usable notes",
            feedback=[
                "no note could be taken on the data: the model found nothing for this persona, "
                "or none of its quotes were found in the data"
            ],
        )
        return {"summary_notes": notes, "summary": draft, "events": events}
    draft = await write_draft(
        ctx, goal, persona, usable, previous=None, iteration=state["iteration"]
    )
    return {"summary_notes": notes, "summary": draft, "events": events}


def _warn_ungrounded(notes: list[SummaryNote], events: list[Event]) -> None:
    missing = [n for n in notes if not n.grounded]
    if missing:
        events.append(
            Event(
                level="warning",
                stage="summarize",
                message=f"{len(missing)} note(s) not used: their quote is not in the data: "
                + "; ".join(f'"{n.quote[:80]}"' for n in missing[:3]),
            )
        )


async def _combine(
    ctx: RunContext,
    state: LoopState,
    notes: list[SummaryNote],
    size: int,
    level: int,
    taken: int,
    events: list[Event],
) -> list[SummaryNote]:
    """Merge batches of `size` notes into at most 8 notes each; quotes stay verbatim."""
    goal, persona = state["goal"], state["persona"]
    doc_ids = [d.id for d in state["documents"]]
    max_notes = min(8, int(goal.param("max_notes")))
    batches = [notes[i : i + size] for i in range(0, len(notes), size)]

    async def merge(batch: list[SummaryNote]) -> SummaryNotesOut:
        messages = goal_messages(ctx, goal, persona, "combine", notes=batch, max_notes=max_notes)
        return await ask(ctx, messages, SummaryNotesOut)

    results = await asyncio.gather(*(merge(b) for b in batches), return_exceptions=True)
    merged: list[SummaryNote] = []
    for batch, result in zip(batches, results, strict=True):
        if isinstance(result, StructuredOutputError):
            events.append(
                Event(
                    level="warning",
                    stage="summarize",
                    message=f"could not merge {len(batch)} notes, kept as they are: {result}",
                )
            )
            merged.extend(batch)
            continue
        if isinstance(result, BaseException):
            raise result
        contexts = [to_context(s, n.id) for n in batch for s in n.spans]
        fresh: list[SummaryNote] = []
        for out in result.notes[:max_notes]:
            point, quote = out.point.strip(), out.quote.strip()
            if not point:
                continue
            quote, spans = grounded_quote([quote, point], contexts, doc_ids, ctx)
            fresh.append(
                SummaryNote(
                    id=f"n{taken + len(merged) + len(fresh) + 1}",
                    point=point,
                    quote=quote,
                    group="combined",
                    spans=spans,
                    level=level,
                )
            )
        _warn_ungrounded(fresh, events)
        merged.extend(n for n in fresh if n.grounded)
    return merged
