"""Node: cut the data into the units the rewrite loop works on (sections, chunks, documents).

`unit: section` follows the Markdown headings, `chunk` packs paragraphs up to `unit_chars`,
`document` takes each document whole; any unit longer than `unit_chars` is split (and that
is reported). Units past `max_units` are not rewritten, which is reported too.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

from langgraph.runtime import Runtime

from personagen.data.chunking import Splitter
from personagen.graph.context import RunContext
from personagen.nodes._goal_common import LoopState
from personagen.nodes._instrument import instrumented
from personagen.state.metadata import Event
from personagen.state.outputs import RewriteItem


def unit_id(doc_id: str, start: int, end: int) -> str:
    """A stable id for a unit of a document."""
    return "u" + hashlib.sha1(f"{doc_id}:{start}:{end}".encode()).hexdigest()[:10]


@instrumented("plan_rewrites")
async def plan_rewrites(state: LoopState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """One pending `RewriteItem` per unit of the data, in document order."""
    ctx, goal = runtime.context, state["goal"]
    documents = state["documents"]
    unit = str(goal.param("unit"))
    size = int(goal.param("unit_chars"))
    splitter: Splitter = "markdown" if unit == "section" else "recursive"
    units = ctx.store.chunks(
        [d.id for d in documents], chunk_size=size, chunk_overlap=0, splitter=splitter
    )
    events: list[Event] = []
    if unit == "document":
        pieces = Counter(u.doc_id for u in units)
        for document in documents:
            if pieces[document.id] > 1:
                events.append(
                    Event(
                        level="info",
                        stage="plan_rewrites",
                        item=document.id,
                        message=f"document {document.source!r} is longer than unit_chars "
                        f"({size}); rewritten in {pieces[document.id]} parts",
                    )
                )
    limit = goal.param("max_units")
    if limit is not None and len(units) > int(limit):
        skipped = units[int(limit) :]
        units = units[: int(limit)]
        events.append(
            Event(
                level="warning",
                stage="plan_rewrites",
                message=f"{len(skipped)} unit(s) past max_units ({limit}) are not rewritten: "
                + ", ".join(u.id for u in skipped[:5])
                + (" ..." if len(skipped) > 5 else ""),
            )
        )
    sources = {d.id: d.source for d in documents}
    items = {}
    for index, chunk in enumerate(units):
        item = RewriteItem(
            id=unit_id(chunk.doc_id, chunk.start, chunk.end),
            doc_id=chunk.doc_id,
            source=sources.get(chunk.doc_id, chunk.doc_id),
            unit_index=index,
            start=chunk.start,
            end=chunk.end,
            iteration=state["iteration"],
        )
        items[item.id] = item
    if not items:
        events.append(
            Event(level="warning", stage="plan_rewrites", message="the data has no text to rewrite")
        )
    return {"rewrites": items, "events": events}
