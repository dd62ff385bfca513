"""Every constraint check of an item in one place.

Deterministic rules, LLM-judged topic rules, plugin rules and the persona's language, with
per-field violations.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

from personagen.errors import StructuredOutputError
from personagen.evaluators.checks import check_item, is_llm_rule
from personagen.evaluators.language import is_language
from personagen.evaluators.plugins import check_plugin_rule
from personagen.evaluators.topic import check_topic_rule
from personagen.llm.client import LLMClient
from personagen.state.results import FieldName, Violation
from personagen.state.spec import Constraints

T = TypeVar("T")


async def check_constraints_of(
    client: LLMClient,
    constraints: Constraints,
    *,
    question: str | None,
    answer: str | None,
    language: str | None = None,
    semaphore: asyncio.Semaphore | None = None,
) -> list[Violation]:
    """Violations of `constraints` by an item's question and answer (None = not checked).

    `language`, when given, is the language the answer must be in (the persona's).
    An LLM judgement that cannot be parsed becomes a violation saying so, never a pass.
    """
    fields: dict[FieldName, str | None] = {"question": question, "answer": answer}
    found = [
        v
        for v in check_item(constraints, question=question or "", answer=answer)
        if fields.get(v.field)
    ]
    checks: list[Coroutine[Any, Any, Violation | None]] = []
    for list_name, rule in constraints.rules:
        if not (is_llm_rule(rule) or rule.kind == "plugin"):
            continue
        targets: tuple[FieldName, ...] = (
            ("question", "answer") if rule.applies_to == "both" else (rule.applies_to,)
        )
        for field in targets:
            text = fields.get(field)
            if not text:
                continue
            if rule.kind == "plugin":
                checks.append(_bounded(semaphore, check_plugin_rule(rule, list_name, field, text)))
            else:
                checks.append(check_topic_rule(client, rule, list_name, field, text))
    if checks:
        # Topic rules go through the client, which bounds its own calls.
        results = await asyncio.gather(*checks, return_exceptions=True)
        for result in results:
            if isinstance(result, StructuredOutputError):
                found.append(
                    Violation(
                        rule="topic",
                        kind="topic",
                        list="check_for",
                        field="answer",
                        reason=f"a topic rule could not be judged: {result}",
                    )
                )
            elif isinstance(result, BaseException):
                raise result
            elif result is not None:
                found.append(result)
    if answer and language and is_language(answer, language) is False:
        found.append(
            Violation(
                rule=f"persona language:{language}",
                kind="language",
                list="check_for",
                field="answer",
                reason=f"the answer is not in the persona's language ({language})",
            )
        )
    return found


async def _bounded(semaphore: asyncio.Semaphore | None, check: Awaitable[T]) -> T:
    """Await a user plugin's check within the run's plugin semaphore, if any."""
    if semaphore is None:
        return await check
    async with semaphore:
        return await check
