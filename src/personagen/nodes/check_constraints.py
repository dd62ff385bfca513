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

from personagen.evaluators.scoring import iteration_report
from personagen.graph.context import RunContext
from personagen.nodes._instrument import instrumented
from personagen.nodes._judge import gate, violations_of
from personagen.state.graph import State


@instrumented("check_constraints")
async def check_constraints(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Check each newly judged pair, then report the pass against the goal's baseline."""
    judged = [p for p in state["pairs"].values() if p.status == "judged"]
    all_violations = await asyncio.gather(
        *(violations_of(p, state, runtime.context) for p in judged)
    )
    baseline = state["goal"].baseline
    selftest = state.get("judge_selftest")
    updated = {
        p.id: gate(p, baseline, v, selftest) for p, v in zip(judged, all_violations, strict=True)
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
