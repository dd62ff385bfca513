"""Node: pause for the reviewer to approve, edit or reject the generated questions.

Edited questions replace the originals verbatim. A rejected generated question is replaced by
a new one drawn from the same excerpt, with the reviewer's note as feedback; a rejected custom
question is dropped (written to rejected.jsonl with the note).
"""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph.runtime import Runtime

from personagen.graph.context import RunContext
from personagen.nodes._common import new_questions, prompt_vars, seed_excerpt
from personagen.nodes._instrument import instrumented
from personagen.nodes._review import as_item, ask, hook_enabled
from personagen.prompts.library import render
from personagen.prompts.schemas import ReplacementQuestionOut
from personagen.state.graph import State
from personagen.state.items import QAPair

REVIEWER_REJECTED = "rejected by the reviewer"


@instrumented("review_questions")
async def review_questions(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Apply the reviewer's per-question decisions."""
    if not hook_enabled(state, "questions"):
        return {}
    pending = new_questions(state["pairs"].values(), state.get("iteration", 0))
    if not pending:
        return {}
    decision = ask(state, "questions", items=[as_item(p, with_answer=False) for p in pending])
    if decision.approve_all:
        return {}
    ctx, goal, persona = runtime.context, state["goal"], state["persona"]
    updated: dict[str, QAPair] = {}
    to_replace: list[tuple[QAPair, str]] = []
    for pair in pending:
        item = decision.items.get(pair.id)
        if item is None or item.action == "approve":
            continue
        if item.action == "edit":
            original = {"question": pair.question, "reasons": ["edited by the reviewer"]}
            updated[pair.id] = pair.model_copy(
                update={
                    "question": item.text.strip(),  # type: ignore[union-attr]
                    "origin": "reviewer",
                    "history": [*pair.history, original],
                }
            )
        elif pair.origin == "custom":
            reason = f"{REVIEWER_REJECTED}: {item.note}" if item.note else REVIEWER_REJECTED
            updated[pair.id] = pair.model_copy(update={"status": "rejected", "feedback": [reason]})
        else:
            to_replace.append((pair, item.note or REVIEWER_REJECTED))

    async def replace(pair: QAPair, note: str) -> str:
        excerpt, source = seed_excerpt(
            ctx.store, pair, fallback_chars=int(goal.param("excerpt_chars"))
        )
        messages = render(
            goal.prompts["replace_question"],
            embedded=ctx.llm.small_model,
            **prompt_vars(persona, goal),
            excerpt=excerpt,
            source=source,
            question=pair.question,
            feedback=[note],
            avoid=[p.question for p in state["pairs"].values() if p.id != pair.id][-20:],
        )
        out = await ctx.llm.structured(messages, ReplacementQuestionOut)
        return out.question.strip()

    questions = await asyncio.gather(*(replace(p, note) for p, note in to_replace))
    for (pair, note), question in zip(to_replace, questions, strict=True):
        updated[pair.id] = pair.model_copy(
            update={
                "question": question,
                "question_attempts": pair.question_attempts + 1,
                "history": [*pair.history, {"question": pair.question, "reasons": [note]}],
            }
        )
    return {"pairs": updated}
