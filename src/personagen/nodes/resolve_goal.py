"""Node: load the goal from the library (or the user's goal file) and merge the user's prompts."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from personagen.graph.context import RunContext
from personagen.llm.factory import judge_is_small
from personagen.nodes._instrument import instrumented
from personagen.prompts.library import resolve_goal as resolve
from personagen.state.graph import State


@instrumented("resolve_goal")
async def resolve_goal(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Resolve `spec.goal` into the goal the run uses."""
    spec = state["spec"]
    return {
        "goal": resolve(spec.goal, base_dir=spec.base_dir, small_judge=judge_is_small(spec.llm))
    }
