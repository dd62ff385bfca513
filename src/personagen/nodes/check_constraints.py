"""Node: gate every judged pair on the baseline and the output constraints; score the pass.

A pair is accepted when every metric of the goal reaches its baseline, its answer is
grounded in at least one source span, it is in the persona's language, and no constraint
rule is violated, and every baseline metric passed the judges' self-test; with a metric that
failed it, such a pair is `unverified`. Everything else becomes `failing` with the reasons in
words, which `refine` feeds back into the regeneration.
"""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph.runtime import Runtime

from personagen.evaluators.constraints import check_constraints_of
from personagen.evaluators.judging import SKIPPED
from personagen.evaluators.scoring import iteration_report
from personagen.graph.context import RunContext
from personagen.nodes._instrument import instrumented
from personagen.state.graph import State
from personagen.state.items import QAPair
from personagen.state.metadata import JudgeSelfTest
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


def _gate(
    pair: QAPair,
    baseline: dict[str, float],
    violations: list[Violation],
    selftest: JudgeSelfTest | None,
) -> QAPair:
    """The pair's status: accepted, unverified, unanswerable or failing (with reasons).

    A metric that failed the judges' self-test does not decide: its shortfalls are not
    reasons to rework the pair, and a pair passing every other gate is `unverified`
    (written apart, never as accepted) while such a metric is in the baseline.
    """
    if not pair.answerable:
        if pair.origin in ("custom", "reviewer"):
            return pair.model_copy(update={"status": "unanswerable", "violations": violations})
        return pair.model_copy(
            update={
                "status": "failing",
                "feedback": [NOT_ANSWERABLE],
                "failed_checks": ["not answerable from the data"],
                "violations": violations,
            }
        )
    reasons: list[str] = []
    checks: list[str] = []
    untrusted: list[str] = []
    for metric, minimum in baseline.items():
        if selftest is not None and not selftest.trusted(metric):
            untrusted.append(metric)
            continue
        value = pair.scores.get(metric)
        if value is None and pair.reasons.get(metric, "").startswith(SKIPPED):
            continue  # skipped because a cheap gate already failed: that gate says why
        if value is None:
            reasons.append(pair.reasons.get(metric, f"{metric} could not be judged"))
            checks.append(f"{metric} not judged")
        elif value < minimum:
            why = pair.reasons.get(metric, "")
            reasons.append(
                f"{metric} {value:.2f} is below {minimum:.2f}" + (f": {why}" if why else "")
            )
            checks.append(f"{metric} below {minimum:.2f}")
    if not pair.spans:
        reasons.append("the answer's supporting quotes were not found in the sources")
        checks.append("no source span")
    reasons.extend(str(v.reason) for v in violations)
    checks.extend(f"constraint {v.rule}" for v in violations)
    if reasons:
        status = "failing"
    elif untrusted:
        status = "unverified"
        assert selftest is not None
        reasons = [
            f"not verified: {m} failed the judges' self-test ({selftest.metrics[m].reason})"
            if m in selftest.metrics
            else f"not verified: {m} was not measured by the judges' self-test"
            for m in untrusted
        ]
        checks = [f"{m} judge failed its self-test" for m in untrusted]
    else:
        status = "accepted"
    return pair.model_copy(
        update={
            "status": status,
            "feedback": reasons,
            "failed_checks": checks,
            "violations": violations,
        }
    )


@instrumented("check_constraints")
async def check_constraints(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Check each newly judged pair, then report the pass against the goal's baseline."""
    judged = [p for p in state["pairs"].values() if p.status == "judged"]
    all_violations = await asyncio.gather(*(_violations(p, state, runtime) for p in judged))
    baseline = state["goal"].baseline
    selftest = state.get("judge_selftest")
    updated = {
        p.id: _gate(p, baseline, v, selftest) for p, v in zip(judged, all_violations, strict=True)
    }
    merged = {**state["pairs"], **updated}
    min_accepted = state["goal"].param("min_accepted")
    report = iteration_report(
        merged,
        baseline,
        state["iteration"],
        int(min_accepted) if min_accepted is not None else None,
    )
    return {"pairs": updated, "reports": [report]}
