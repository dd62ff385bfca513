"""Node: a last review before the bundle is written (`output` hook)."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from personagen.graph.context import RunContext
from personagen.nodes._common import regrounded
from personagen.nodes._instrument import instrumented
from personagen.nodes._judge import judged_by_reviewer
from personagen.nodes._review import as_item, ask, before_edit, hook_enabled
from personagen.state.graph import State
from personagen.state.items import QAPair


@instrumented("review_output")
async def review_output(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Edit or reject accepted pairs before they are written."""
    if not hook_enabled(state, "output"):
        return {}
    accepted = [p for p in state.get("pairs", {}).values() if p.status == "accepted"]
    decision = ask(state, "output", items=[as_item(p, with_answer=True) for p in accepted])
    if decision.approve_all:
        return {}
    updated: dict[str, QAPair] = {}
    for pair in accepted:
        item = decision.items.get(pair.id)
        if item is None or item.action == "approve":
            continue
        if item.action == "edit":
            edited = pair.model_copy(
                update={
                    "answer": item.text.strip(),  # type: ignore[union-attr]
                    "history": [*pair.history, before_edit(pair)],
                }
            )
            updated[pair.id] = await judged_by_reviewer(
                regrounded(edited, runtime.context.store, [d.id for d in state["documents"]]),
                state,
                runtime.context,
            )
        else:
            note = (
                f"rejected by the reviewer: {item.note}"
                if item.note
                else "rejected by the reviewer"
            )
            updated[pair.id] = pair.model_copy(update={"status": "rejected", "feedback": [note]})
    return {"pairs": updated}
