"""The persona-fit judge: would this persona ask this, and does the answer suit them."""

from __future__ import annotations

from personagen.llm.client import LLMClient
from personagen.prompts.library import render
from personagen.prompts.schemas import PersonaFitOut
from personagen.state.goal import ResolvedGoal
from personagen.state.items import PersonaProfile


async def judge_persona_fit(
    client: LLMClient,
    goal: ResolvedGoal,
    persona: PersonaProfile,
    *,
    question: str,
    answer: str,
) -> tuple[float, float, str]:
    """Score 0..1 (the two 1-5 ratings' mean, rescaled), the question's own fit, the reason.

    Raises:
        LLMError: the judge's output could not be obtained or parsed.
    """
    messages = render(
        goal.prompts["persona_fit"],
        embedded=client.small_model,
        persona=persona.render(),
        persona_short=persona.short(),
        language=persona.language,
        question=question,
        answer=answer,
    )
    out = await client.structured(messages, PersonaFitOut)
    score = ((out.question_fit - 1) + (out.answer_fit - 1)) / 8.0
    reason = (
        f"question fit {out.question_fit}/5, answer fit {out.answer_fit}/5: {out.reason.strip()}"
    )
    return round(score, 4), round((out.question_fit - 1) / 4.0, 4), reason
