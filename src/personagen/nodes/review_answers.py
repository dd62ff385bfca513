"""Node: pause for the reviewer to approve, edit or reject this pass's answers.

Approve accepts a pair whatever the judges said; edit replaces the answer and accepts it;
reject sends the pair back to `refine` with the reviewer's note as feedback.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from personagen.evaluators.scoring import iteration_report
from personagen.graph.context import RunContext
from personagen.nodes._common import regrounded
from personagen.nodes._instrument import instrumented
from personagen.nodes._judge import judged_by_reviewer
from personagen.nodes._review import as_item, ask, before_edit, hook_enabled
from personagen.state.graph import State
from personagen.state.items import QAPair


@instrumented("review_answers")
async def review_answers(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Apply the reviewer's decisions and re-score the pass."""
    if not hook_enabled(state, "answers"):
        return {}
    iteration = state["iteration"]
    shown = [
        p
        for p in state["pairs"].values()
        if p.iteration == iteration and p.status in ("accepted", "unverified", "failing")
    ]
    decision = ask(state, "answers", items=[as_item(p, with_answer=True) for p in shown])
    if decision.approve_all or not decision.items:
        return {}
    updated: dict[str, QAPair] = {}
    for pair in shown:
        item = decision.items.get(pair.id)
        if item is None:
            continue
        if item.action == "approve":
            updated[pair.id] = pair.model_copy(update={"status": "accepted", "feedback": []})
        elif item.action == "edit":
            edited = pair.model_copy(
                update={
                    "answer": item.text.strip(),  # type: ignore[union-attr]
                    "status": "accepted",
                    "feedback": [],
                    "history": [*pair.history, before_edit(pair)],
                }
            )
            updated[pair.id] = await judged_by_reviewer(
                regrounded(edited, runtime.context.store, [d.id for d in state["documents"]]),
                state,
                runtime.context,
            )
        else:
            note = f"reviewer: {item.note}" if item.note else "rejected by the reviewer"
            updated[pair.id] = pair.model_copy(update={"status": "failing", "feedback": [note]})
    merged = {**state["pairs"], **updated}
    min_accepted = state["goal"].param("min_accepted")
    report = iteration_report(
        merged,
        state["goal"].baseline,
        iteration,
        int(min_accepted) if min_accepted is not None else None,
    )
    return {"pairs": updated, "reports": [report]}
