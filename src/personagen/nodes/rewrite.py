"""Node: rewrite one unit of the data for the persona, following the user's instruction.

Runs once per unit (a `Send` task), so finished rewrites are checkpointed one by one. On a
second attempt the previous output and the reasons it was rejected are in the prompt.
"The instruction does not apply to this text" is a valid outcome, kept and reported.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from personagen.errors import StructuredOutputError
from personagen.graph.context import RunContext
from personagen.nodes._goal_common import ask, goal_messages
from personagen.nodes._instrument import instrumented
from personagen.prompts.schemas_goals import RewriteOut
from personagen.state.outputs import RewriteTask


@instrumented("rewrite")
async def rewrite(task: RewriteTask, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Apply the goal's instruction to the unit's source text."""
    ctx, goal, persona, item = runtime.context, task["goal"], task["persona"], task["item"]
    text = ctx.store.get_text(item.doc_id)[item.start : item.end]
    messages = goal_messages(
        ctx,
        goal,
        persona,
        "rewrite",
        instruction=goal.param("instruction"),
        criteria=goal.param("criteria"),
        text=text,
        source=item.source,
        previous=item.output if item.feedback else "",
        feedback=item.feedback,
    )
    update: dict[str, Any] = {
        "attempts": item.attempts + 1,
        "iteration": task["iteration"],
        "error": None,
        "scores": {},
        "reasons": {},
        "claims": [],
        "violations": [],
    }
    try:
        out = await ask(ctx, messages, RewriteOut)
    except StructuredOutputError as exc:
        update |= {"status": "failing", "error": str(exc), "feedback": [f"rewriting failed: {exc}"]}
        return {"rewrites": {item.id: item.model_copy(update=update)}}
    parts = [p.strip() for p in out.parts if p.strip()]
    applicable = bool(out.applicable and parts)
    update |= {
        "parts": parts,
        "applicable": applicable,
        "status": "generated" if applicable else "not_applicable",
        "feedback": [] if applicable else ["the instruction does not apply to this text"],
    }
    return {"rewrites": {item.id: item.model_copy(update=update)}}
