"""LLM-judged topic rules ("no competitor products", "cites the section it comes from")."""

from __future__ import annotations

from personagen.llm.client import LLMClient
from personagen.prompts.library import render, shared_prompt
from personagen.prompts.schemas import TopicJudgeOut
from personagen.state.results import FieldName, ListName, Violation
from personagen.state.spec import ConstraintRule


async def check_topic_rule(
    client: LLMClient, rule: ConstraintRule, list_name: ListName, field: FieldName, text: str
) -> Violation | None:
    """Judge `text` against a topic rule; a violation when filter_out matches or check_for misses.

    Raises:
        LLMError: the judgement could not be obtained.
    """
    assert rule.topic is not None
    messages = render(
        shared_prompt("topic_rule"), embedded=client.small_model, topic=rule.topic, text=text
    )
    verdict = await client.structured(messages, TopicJudgeOut)
    violated = verdict.matches if list_name == "filter_out" else not verdict.matches
    if not violated:
        return None
    what = "is about" if list_name == "filter_out" else "does not satisfy"
    return Violation(
        rule=rule.label,
        kind="topic",
        list=list_name,
        field=field,
        reason=f"{field} {what} '{rule.topic}': {verdict.reason.strip()}",
    )
