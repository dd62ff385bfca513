"""Node: rewrite a failing summary from the same notes, feeding the judges' reasons back.

Only the writing (reduce) step runs again: the notes taken on the data stay as they are.
The version being replaced goes to the summary's history with the reasons it was reworked.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from personagen.graph.context import RunContext
from personagen.nodes._goal_common import LoopState, snapshot, write_draft
from personagen.nodes._instrument import instrumented


@instrumented("refine_summary")
async def refine_summary(state: LoopState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Write the next version of the summary with the previous one's problems to fix."""
    draft = state["summary"]
    iteration = state["iteration"] + 1
    if draft.status != "failing":
        raise ValueError(f"refine_summary reached with a {draft.status} summary")
    notes = [n for n in state.get("summary_notes", []) if n.used]
    previous = draft.model_copy(
        update={"history": [*draft.history, snapshot(draft, draft.markdown())]}
    )
    new = await write_draft(
        runtime.context,
        state["goal"],
        state["persona"],
        notes,
        previous=previous,
        iteration=iteration,
    )
    return {"summary": new, "iteration": iteration}
