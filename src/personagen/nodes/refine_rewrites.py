"""Node: send only the failing rewrites back to be rewritten, with their reasons.

Accepted and not-applicable units are never touched. The version being replaced goes to
the unit's history with the reasons it was reworked; the reasons are in the next prompt.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from personagen.graph.context import RunContext
from personagen.nodes._goal_common import LoopState, snapshot
from personagen.nodes._instrument import instrumented


@instrumented("refine_rewrites")
async def refine_rewrites(state: LoopState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Queue each failing unit for another rewrite."""
    iteration = state["iteration"] + 1
    items = state.get("rewrites", {})
    updated = {
        item.id: item.model_copy(
            update={
                "status": "pending",
                "iteration": iteration,
                "history": [*item.history, snapshot(item, item.output)],
            }
        )
        for item in items.values()
        if item.status == "failing"
    }
    return {"rewrites": updated, "iteration": iteration}
