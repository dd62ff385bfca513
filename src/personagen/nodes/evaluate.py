"""Node: judge one answered pair on every metric of the goal (a `Send` task)."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from personagen.graph.context import RunContext
from personagen.nodes._instrument import instrumented
from personagen.nodes._judge import judge
from personagen.state.graph import JudgeTask


@instrumented("evaluate")
async def evaluate(task: JudgeTask, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Score the pair on every metric of the goal.

    Every pair with an answer is judged, whoever wrote the answer: the model, a hook or a
    reviewer (an answer set on a pair the model called unanswerable makes it answerable).
    Only a pair without an answer is left unjudged.
    """
    ctx, goal, persona, pair = runtime.context, task["goal"], task["persona"], task["pair"]
    judged = await judge(
        pair, goal, persona, ctx, questions=task.get("questions", []), selftest=task.get("selftest")
    )
    return {"pairs": {pair.id: judged}}
