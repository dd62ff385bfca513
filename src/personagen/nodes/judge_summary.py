"""Node: judge the summary (faithfulness, coverage, persona fit), check constraints, score.

- faithfulness: the judge lists the claims of each part of the summary with the source
  sentence supporting each, copied word for word; a claim counts as supported only when
  that quote is found in the data (its spans are kept). Score = share supported.
- coverage: for each of the persona's needs (goals, pain points, interests), whether the
  data addresses it at all and how well the summary covers it (1-5); the mean over the
  needs the data addresses. Needs the data does not address are reported, not counted.
- persona_fit: level, concerns, language and length for this persona (1-5).
Constraints are checked on the summary text as the `answer` field. The pass is scored into
an `IterationReport`; at the last pass a failing summary becomes rejected with its reasons.
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
    rank_notes,
    score_claims,
    to_context,
)
from personagen.nodes._instrument import instrumented
from personagen.prompts.library import LOOP_METRICS
from personagen.prompts.schemas_goals import NeedCoverageOut, SummaryFitOut
from personagen.state.metadata import Event
from personagen.state.outputs import Claim, NeedCoverage, SummaryDraft, SummaryNote


def _needs(state: LoopState) -> list[str]:
    persona = state["persona"]
    return list(dict.fromkeys(persona.needs)) or [
        f"what {persona.short()} needs to know from these documents"
    ]


@instrumented("judge_summary")
async def judge_summary(state: LoopState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Judge a freshly written summary, gate it, and report the pass."""
    ctx, goal = runtime.context, state["goal"]
    draft = state["summary"]
    notes = [n for n in state.get("summary_notes", []) if n.used]
    events: list[Event] = []
    if draft.status == "generated":
        draft = await _judge(ctx, state, draft, notes, events)
    elif draft.error:
        events.append(
            Event(level="warning", stage="summarize", message=draft.feedback[-1], item="summary")
        )
    report = pass_report([draft], goal.baseline, state["iteration"])
    if draft.status == "failing" and loop_ends(
        report, state["iteration"], state["spec"].run.max_iterations
    ):
        draft = draft.model_copy(update={"status": "rejected"})
    return {"summary": draft, "reports": [report], "events": events}


async def _judge(
    ctx: RunContext,
    state: LoopState,
    draft: SummaryDraft,
    notes: list[SummaryNote],
    events: list[Event],
) -> SummaryDraft:
    goal, persona = state["goal"], state["persona"]
    doc_ids = [d.id for d in state["documents"]]
    text = draft.markdown()
    metrics = set(goal.metrics)
    parts = [f"{s.heading}\n{s.text}".strip() for s in draft.sections]
    groups = batches(parts, int(goal.param("claims_chars"))) if "faithfulness" in metrics else []
    needs = _needs(state) if "coverage" in metrics else []
    k = max(1, int(goal.param("evidence_notes")))

    async def claims_of(group: list[int]) -> list[Claim]:
        output = "\n\n".join(parts[i] for i in group)
        evidence = [to_context(s, n.id) for n in rank_notes(notes, output, k) for s in n.spans]
        return await judge_claims(
            ctx,
            goal,
            persona,
            parts={i: parts[i] for i in group},
            evidence=evidence,
            doc_ids=doc_ids,
        )

    async def coverage_of(need: str) -> NeedCoverageOut:
        messages = goal_messages(
            ctx, goal, persona, "coverage", need=need, notes=notes, summary=text
        )
        return await ask(ctx, messages, NeedCoverageOut)

    async def fit() -> SummaryFitOut | None:
        if "persona_fit" not in metrics:
            return None
        messages = goal_messages(
            ctx, goal, persona, "persona_fit", summary=text, target_words=goal.param("target_words")
        )
        return await ask(ctx, messages, SummaryFitOut)

    claim_results, coverage_results, fit_result, violations, plugins = await asyncio.gather(
        asyncio.gather(*(claims_of(g) for g in groups), return_exceptions=True),
        asyncio.gather(*(coverage_of(n) for n in needs), return_exceptions=True),
        asyncio.gather(fit(), return_exceptions=True),
        output_violations(
            ctx,
            state["spec"].constraints,
            text,
            language=persona.language,
            check_language=bool(goal.param("check_language")),
        ),
        plugin_scores(
            goal,
            LOOP_METRICS["summary"],
            persona,
            task="Summarize the data for this persona.",
            output=text,
            contexts=[s.text for n in notes for s in n.spans],
        ),
    )
    scores: dict[str, float] = dict(plugins[0])
    reasons: dict[str, str] = dict(plugins[1])

    claims = score_claims(claim_results, metrics, scores, reasons)

    coverage: list[NeedCoverage] = []
    for need, verdict in zip(needs, coverage_results, strict=True):
        if isinstance(verdict, BaseException):
            coverage.append(
                NeedCoverage(need=need, reason=f"could not be judged: {failure_reason(verdict)}")
            )
        else:
            coverage.append(
                NeedCoverage(
                    need=need,
                    in_data=verdict.in_data,
                    score=round((verdict.covered - 1) / 4, 4) if verdict.in_data else None,
                    reason=verdict.reason.strip(),
                )
            )
    if "coverage" in metrics:
        value, reason = _coverage(coverage)
        if value is not None:
            scores["coverage"] = value
        reasons["coverage"] = reason
        absent = [c.need for c in coverage if c.in_data is False]
        if absent:
            events.append(
                Event(
                    level="info",
                    stage="judge_summary",
                    item="summary",
                    message="the data does not address these needs of the persona: "
                    + "; ".join(absent),
                )
            )

    fit_out = fit_result[0]
    if isinstance(fit_out, BaseException):
        reasons["persona_fit"] = f"persona_fit could not be judged: {failure_reason(fit_out)}"
    elif fit_out is not None:
        scores["persona_fit"] = round((fit_out.score - 1) / 4, 4)
        reasons["persona_fit"] = f"persona fit {fit_out.score}/5: {fit_out.reason.strip()}"

    judged = draft.model_copy(
        update={
            "claims": claims,
            "needs": coverage,
            "scores": scores,
            "reasons": reasons,
            "violations": violations,
            "error": None,
        }
    )
    return gate(judged, goal.baseline)


def _coverage(needs: list[NeedCoverage]) -> tuple[float | None, str]:
    judged = [n for n in needs if n.in_data is not None]
    addressed = [n for n in judged if n.in_data]
    if not judged:
        return None, "coverage could not be judged: " + "; ".join(n.reason for n in needs[:2])
    if not addressed:
        return 1.0, "nothing to cover: the data addresses none of the persona's needs"
    scored = [n for n in addressed if n.score is not None]
    value = round(sum(n.score for n in scored if n.score is not None) / len(addressed), 4)
    weak = [n for n in addressed if (n.score or 0.0) < 0.75]
    reason = (
        f"{len(addressed) - len(weak)} of {len(addressed)} need(s) the data addresses are covered"
    )
    if weak:
        reason += "; cover better: " + "; ".join(f"{n.need} ({n.reason})" for n in weak[:4])
    return value, reason
