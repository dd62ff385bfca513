"""Node: gate every judged pair on the baseline and the output constraints; score the pass.

A pair is accepted when every metric of the goal reaches its baseline, its answer is
grounded in at least one source span, it is in the persona's language, and no constraint
rule is violated. Everything else becomes `failing` with the reasons in words, which
`refine` feeds back into the regeneration.
"""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph.runtime import Runtime

from personagen.errors import StructuredOutputError
from personagen.evaluators.checks import check_item, is_llm_rule
from personagen.evaluators.language import is_language
from personagen.evaluators.plugins import check_plugin_rule
from personagen.evaluators.scoring import iteration_report
from personagen.evaluators.topic import check_topic_rule
from personagen.graph.context import RunContext
from personagen.nodes._instrument import instrumented
from personagen.state.graph import State
from personagen.state.items import QAPair
from personagen.state.results import Violation

NOT_ANSWERABLE = "the data does not answer this question"


async def _violations(pair: QAPair, state: State, runtime: Runtime[RunContext]) -> list[Violation]:
    constraints = state["spec"].constraints
    answer = pair.answer if pair.answerable else None
    found = check_item(constraints, question=pair.question, answer=answer)
    llm_rules = [
        (name, rule)
        for name, rule in constraints.rules
        if is_llm_rule(rule) or rule.kind == "plugin"
    ]
    checks = []
    for list_name, rule in llm_rules:
        fields = ("question", "answer") if rule.applies_to == "both" else (rule.applies_to,)
        for field in fields:
            text = pair.question if field == "question" else answer
            if text:
                if rule.kind == "plugin":
                    checks.append(check_plugin_rule(rule, list_name, field, text))  # type: ignore[arg-type]
                else:
                    checks.append(
                        check_topic_rule(runtime.context.llm, rule, list_name, field, text)  # type: ignore[arg-type]
                    )
    async with runtime.context.semaphore:
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
    language = state["persona"].language
    if answer and state["goal"].param("check_language") and is_language(answer, language) is False:
        found.append(
            Violation(
                rule=f"persona language:{language}",
                kind="language",
                list="check_for",
                field="answer",
                reason=f"answer is not in the persona's language ({language})",
            )
        )
    return found


def _gate(pair: QAPair, baseline: dict[str, float], violations: list[Violation]) -> QAPair:
    if not pair.answerable:
        if pair.origin in ("custom", "reviewer"):
            return pair.model_copy(update={"status": "unanswerable", "violations": violations})
        return pair.model_copy(
            update={"status": "failing", "feedback": [NOT_ANSWERABLE], "violations": violations}
        )
    reasons: list[str] = []
    for metric, minimum in baseline.items():
        value = pair.scores.get(metric)
        if value is None:
            reasons.append(pair.reasons.get(metric, f"{metric} could not be judged"))
        elif value < minimum:
            reasons.append(
                f"{metric} {value:.2f} is below {minimum:.2f}: {pair.reasons.get(metric, '')}".rstrip(
                    ": "
                )
            )
    if not pair.spans:
        reasons.append("the answer's supporting quotes were not found in the sources")
    reasons.extend(str(v.reason) for v in violations)
    status = "failing" if reasons else "accepted"
    return pair.model_copy(update={"status": status, "feedback": reasons, "violations": violations})


@instrumented("check_constraints")
async def check_constraints(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Check each newly judged pair, then report the pass against the goal's baseline."""
    judged = [p for p in state["pairs"].values() if p.status == "judged"]
    all_violations = await asyncio.gather(*(_violations(p, state, runtime) for p in judged))
    baseline = state["goal"].baseline
    updated = {p.id: _gate(p, baseline, v) for p, v in zip(judged, all_violations, strict=True)}
    merged = {**state["pairs"], **updated}
    min_accepted = state["goal"].param("min_accepted")
    report = iteration_report(
        merged,
        baseline,
        state["iteration"],
        int(min_accepted) if min_accepted is not None else None,
    )
    return {"pairs": updated, "reports": [report]}
