"""Node: judge every fresh rewrite, check constraints, gate each one, and score the pass.

- faithfulness: the judge lists the claims of the rewrite with the sentence of the source
  unit supporting each, word for word; a claim is supported only when that quote is found
  in the data. Score = share supported.
- criteria: the user's criteria, each judged 1-5 with a reason; the metric is the lowest of
  them (rescaled to 0..1), so every criterion must reach the baseline.
- persona_fit: how well the rewrite suits the persona (1-5), from the same judge call.
Only fresh rewrites are judged: accepted units are never judged or touched again. At the
last pass, failing units become rejected with their reasons.
"""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph.runtime import Runtime

from personagen.graph.context import RunContext
from personagen.nodes._goal_common import (
    LoopState,
    ask,
    batches,
    failure_reason,
    gate,
    goal_messages,
    judge_claims,
    loop_ends,
    output_violations,
    pass_report,
    plugin_scores,
    reject_failing,
    score_claims,
)
from personagen.nodes._instrument import instrumented
from personagen.prompts.library import LOOP_METRICS
from personagen.prompts.schemas_goals import CriteriaJudgeOut
from personagen.state.items import RetrievedContext
from personagen.state.metadata import Event
from personagen.state.outputs import Claim, RewriteItem


def match_criteria(
    criteria: list[dict[str, str]], out: CriteriaJudgeOut
) -> dict[str, tuple[int, str] | None]:
    """Each criterion's (score, reason), matched by name, then in order; None if missing."""
    remaining = list(out.criteria)
    matched: dict[str, tuple[int, str]] = {}
    for criterion in criteria:
        for index, verdict in enumerate(remaining):
            if verdict.criterion.strip().lower() == criterion["name"].lower():
                matched[criterion["name"]] = (verdict.score, verdict.reason.strip())
                del remaining[index]
                break
    unmatched = [c for c in criteria if c["name"] not in matched]
    for criterion, verdict in zip(unmatched, remaining, strict=False):
        matched[criterion["name"]] = (verdict.score, verdict.reason.strip())
    return {c["name"]: matched.get(c["name"]) for c in criteria}


@instrumented("judge_rewrites")
async def judge_rewrites(state: LoopState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Judge and gate each fresh rewrite; report the pass against the goal's baseline."""
    items = state.get("rewrites", {})
    iteration = state["iteration"]
    fresh = [i for i in items.values() if i.status == "generated"]
    events = [
        Event(level="warning", stage="rewrite", message=f"rewriting failed: {i.error}", item=i.id)
        for i in items.values()
        if i.iteration == iteration and i.status == "failing" and i.error
    ]
    judged = await asyncio.gather(*(_judge(runtime.context, state, i) for i in fresh))
    updated = {i.id: i for i in judged}
    merged = {**items, **updated}
    report = pass_report(list(merged.values()), state["goal"].baseline, iteration)
    if loop_ends(report, iteration, state["spec"].run.max_iterations):
        updated |= reject_failing(merged)
    return {"rewrites": updated, "reports": [report], "events": events}


async def _judge(ctx: RunContext, state: LoopState, item: RewriteItem) -> RewriteItem:
    goal, persona = state["goal"], state["persona"]
    metrics = set(goal.metrics)
    text = ctx.store.get_text(item.doc_id)[item.start : item.end]
    output = item.output
    criteria: list[dict[str, str]] = goal.param("criteria")
    source = RetrievedContext(
        chunk_id=item.id,
        doc_id=item.doc_id,
        start=item.start,
        end=item.end,
        score=1.0,
        text=text,
    )
    groups = (
        batches(item.parts, int(goal.param("claims_chars"))) if "faithfulness" in metrics else []
    )

    async def claims_of(group: list[int]) -> list[Claim]:
        return await judge_claims(
            ctx,
            goal,
            persona,
            parts={i: item.parts[i] for i in group},
            evidence=[source],
            doc_ids=[item.doc_id],
        )

    async def criteria_judgement() -> CriteriaJudgeOut | None:
        if not metrics & {"criteria", "persona_fit"}:
            return None
        messages = goal_messages(
            ctx,
            goal,
            persona,
            "judge",
            instruction=goal.param("instruction"),
            criteria=criteria,
            text=text,
            source=item.source,
            output=output,
        )
        return await ask(ctx, messages, CriteriaJudgeOut)

    claim_results, judgement, violations, plugins = await asyncio.gather(
        asyncio.gather(*(claims_of(g) for g in groups), return_exceptions=True),
        asyncio.gather(criteria_judgement(), return_exceptions=True),
        output_violations(
            ctx,
            state["spec"].constraints,
            output,
            language=persona.language,
            check_language=bool(goal.param("check_language")),
        ),
        plugin_scores(
            goal,
            LOOP_METRICS["rewrite"],
            persona,
            task=str(goal.param("instruction")),
            output=output,
            contexts=[text],
        ),
    )
    scores: dict[str, float] = dict(plugins[0])
    reasons: dict[str, str] = dict(plugins[1])

    claims = score_claims(claim_results, metrics, scores, reasons)

    out = judgement[0]
    if isinstance(out, BaseException):
        problem = failure_reason(out)
        for metric in metrics & {"criteria", "persona_fit"}:
            reasons[metric] = f"{metric} could not be judged: {problem}"
    elif out is not None:
        _criteria_scores(criteria, out, scores, reasons, metrics)
    judged = item.model_copy(
        update={"claims": claims, "scores": scores, "reasons": reasons, "violations": violations}
    )
    return gate(judged, goal.baseline)


def _criteria_scores(
    criteria: list[dict[str, str]],
    out: CriteriaJudgeOut,
    scores: dict[str, float],
    reasons: dict[str, str],
    metrics: set[str],
) -> None:
    if "persona_fit" in metrics:
        scores["persona_fit"] = round((out.persona_fit - 1) / 4, 4)
        reasons["persona_fit"] = f"persona fit {out.persona_fit}/5: {out.persona_reason.strip()}"
    if "criteria" not in metrics:
        return
    matched = match_criteria(criteria, out)
    missing = [name for name, value in matched.items() if value is None]
    for name, value in matched.items():
        if value is not None:
            scores[f"criterion:{name}"] = round((value[0] - 1) / 4, 4)
            reasons[f"criterion:{name}"] = f"{value[0]}/5: {value[1]}"
    if missing:
        reasons["criteria"] = f"criteria could not be judged: no verdict for {', '.join(missing)}"
        return
    lowest = min(matched, key=lambda n: matched[n][0])  # type: ignore[index]
    score, why = matched[lowest]  # type: ignore[misc]
    scores["criteria"] = round((score - 1) / 4, 4)
    weak = [f"{n} {v[0]}/5 ({v[1]})" for n, v in matched.items() if v is not None and v[0] < 4]
    reasons["criteria"] = (
        f"lowest: {lowest} {score}/5: {why}" if not weak else "falls short on " + "; ".join(weak)
    )
