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

from personagen.evaluators.constraints import check_constraints_of
from personagen.evaluators.scoring import iteration_report
from personagen.graph.context import RunContext
from personagen.nodes._instrument import instrumented
from personagen.state.graph import State
from personagen.state.items import QAPair
from personagen.state.results import Violation

NOT_ANSWERABLE = "the data does not answer this question"


async def _violations(pair: QAPair, state: State, runtime: Runtime[RunContext]) -> list[Violation]:
    check_language = bool(state["goal"].param("check_language"))
    return await check_constraints_of(
        runtime.context.llm,
        state["spec"].constraints,
        question=pair.question,
        answer=pair.answer if pair.answerable else None,
        language=state["persona"].language if check_language else None,
        semaphore=runtime.context.semaphore,
    )


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
            why = pair.reasons.get(metric, "")
            reasons.append(
                f"{metric} {value:.2f} is below {minimum:.2f}" + (f": {why}" if why else "")
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
