"""Node: rework only the failing pairs, feeding the reasons back into the regeneration.

A pair whose *question* is the problem (the data does not answer it, the persona would not
ask it, a constraint on the question) gets a new question drawn from the same excerpt; a
pair whose *answer* is the problem is re-answered with the reasons as feedback. Accepted
pairs are never touched. Custom questions are never replaced, only re-answered. A
replacement question passes the same question hygiene as a generated one (runaway text cut
or rejected, prompt-example echoes rejected; each recorded in `removed_questions`) and must
not duplicate another question.
"""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph.runtime import Runtime

from personagen.errors import StructuredOutputError
from personagen.evaluators.dedup import near_duplicates
from personagen.evaluators.question_hygiene import QuestionHygiene
from personagen.graph.context import RunContext
from personagen.nodes._common import prompt_vars, seed_excerpt
from personagen.nodes._instrument import instrumented
from personagen.prompts.library import render
from personagen.prompts.schemas import ReplacementQuestionOut
from personagen.state.graph import State
from personagen.state.items import QAPair
from personagen.state.metadata import Event


def question_is_the_problem(pair: QAPair, persona_fit_min: float | None) -> bool:
    """Whether to replace the question rather than re-answer it."""
    if pair.origin in ("custom", "reviewer"):  # the user's own words are never replaced
        return False
    if pair.answerable is False:
        return True
    if any(v.field == "question" for v in pair.violations):
        return True
    question_fit = pair.scores.get("question_fit")
    return (
        persona_fit_min is not None and question_fit is not None and question_fit < persona_fit_min
    )


def _snapshot(pair: QAPair) -> dict[str, object]:
    return {
        "iteration": pair.iteration,
        "question": pair.question,
        "answer": pair.answer,
        "scores": dict(pair.scores),
        "reasons": list(pair.feedback),
    }


@instrumented("refine")
async def refine(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Queue failing pairs for re-answering, replacing their questions where needed."""
    ctx, goal, persona = runtime.context, state["goal"], state["persona"]
    iteration = state["iteration"] + 1
    failing = [p for p in state["pairs"].values() if p.status == "failing"]
    persona_min = goal.baseline.get("persona_fit")
    others = [p.question for p in state["pairs"].values() if p.status != "failing"]
    threshold = float(goal.param("dedup_threshold")) / 100.0
    events: list[Event] = []
    cleaned: list[dict[str, Any]] = []
    hygiene = QuestionHygiene.for_goal(goal.prompts)

    async def replace(pair: QAPair) -> str | None:
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
            feedback=pair.feedback,
            # Never swing back to a question this pair already had (a reviewer may have
            # rejected it).
            avoid=[
                *[q for q in others if q != pair.question][-20:],
                *[str(h["question"]) for h in pair.history if h.get("question")],
            ],
        )
        out = await ctx.llm.structured(messages, ReplacementQuestionOut)
        verdict = hygiene.check(out.question, source=excerpt)
        record = verdict.record("refine", pair=pair.id)
        if record is not None:
            cleaned.append(record)
        return verdict.question

    to_replace = [p for p in failing if question_is_the_problem(p, persona_min)]
    results = await asyncio.gather(*(replace(p) for p in to_replace), return_exceptions=True)
    replacements = dict(zip((p.id for p in to_replace), results, strict=True))

    updated: dict[str, QAPair] = {}
    taken = list(others)
    for pair in failing:
        base = {
            "history": [*pair.history, _snapshot(pair)],
            "iteration": iteration,
            "status": "pending",
        }
        new_question = replacements.get(pair.id)
        if isinstance(new_question, BaseException) and not isinstance(
            new_question, StructuredOutputError
        ):
            raise new_question
        if isinstance(new_question, str) and new_question:
            duplicate = near_duplicates([*taken, new_question], threshold=threshold)
            if any(dup == len(taken) for _, dup, _ in duplicate):
                events.append(
                    Event(
                        level="warning",
                        stage="refine",
                        item=pair.id,
                        message=f"replacement question duplicates another: {new_question!r}",
                    )
                )
                new_question = None
        if isinstance(new_question, str) and new_question:
            taken.append(new_question)
            updated[pair.id] = pair.model_copy(
                update=base
                | {
                    "question": new_question,
                    "question_attempts": pair.question_attempts + 1,
                    "feedback": [],
                    "answer": "",
                    "answerable": None,
                    "spans": [],
                    "contexts": [],
                    "scores": {},
                    "reasons": {},
                    "violations": [],
                }
            )
            continue
        if isinstance(new_question, StructuredOutputError):
            events.append(
                Event(
                    level="warning",
                    stage="refine",
                    item=pair.id,
                    message=f"could not replace the question: {new_question}",
                )
            )
        if pair.answerable is False and pair.origin not in ("custom", "reviewer"):
            # Re-answering a question the data cannot answer gives the same result.
            updated[pair.id] = pair.model_copy(
                update={"status": "rejected", "iteration": iteration}
            )
            continue
        updated[pair.id] = pair.model_copy(update=base)
    return {
        "pairs": updated,
        "iteration": iteration,
        "events": events,
        "removed_questions": cleaned,
    }
