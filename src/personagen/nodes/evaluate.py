"""Node: judge one answered pair with Ragas and the persona-fit judge (a `Send` task)."""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph.runtime import Runtime

from personagen.errors import StructuredOutputError
from personagen.evaluators.grounding import is_extractive
from personagen.evaluators.persona_fit import judge_persona_fit
from personagen.evaluators.plugins import score_plugin_metric
from personagen.evaluators.ragas_metrics import RAGAS_METRICS, MetricScore, RagasJudge
from personagen.graph.context import RunContext
from personagen.nodes._instrument import instrumented
from personagen.state.graph import JudgeTask


@instrumented("evaluate")
async def evaluate(task: JudgeTask, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Score the pair on every metric of the goal; unanswerable pairs are not judged."""
    ctx, goal, persona, pair = runtime.context, task["goal"], task["persona"], task["pair"]
    if not pair.answerable:
        return {"pairs": {pair.id: pair.model_copy(update={"status": "judged"})}}
    contexts = [c.text for c in pair.contexts]
    question_fits: dict[str, float] = {}
    strictness = int(goal.param("answer_relevancy_strictness"))
    judge = ctx.llm.cache.get(f"ragas:{strictness}")
    if judge is None:
        judge = ctx.llm.cache[f"ragas:{strictness}"] = RagasJudge(
            ctx.llm, relevancy_strictness=strictness
        )

    async def score(metric: str) -> MetricScore:
        if metric == "faithfulness" and is_extractive(pair.answer, [s.text for s in pair.spans]):
            # Every sentence of the answer is a verbatim source span: faithful by construction,
            # no judge needed (and no tiny-model judge noise).
            return MetricScore(1.0, "extractive: the answer is made of verbatim source spans")
        # Our model calls take one of the client's slots each, per call; user plugins (which
        # may call anything) are bounded by the run's plugin semaphore.
        if metric in RAGAS_METRICS:
            return await judge.score(
                metric, question=pair.question, answer=pair.answer, contexts=contexts
            )
        if metric != "persona_fit":
            async with ctx.semaphore:
                value, reason = await score_plugin_metric(
                    metric,
                    question=pair.question,
                    answer=pair.answer,
                    contexts=contexts,
                    persona=persona,
                )
            return MetricScore(round(value, 4), reason)
        try:
            value, question_fit, reason = await judge_persona_fit(
                ctx.llm, goal, persona, question=pair.question, answer=pair.answer
            )
        except StructuredOutputError as exc:
            return MetricScore(None, f"persona_fit could not be judged: {exc}")
        question_fits[pair.id] = question_fit
        return MetricScore(value, reason)

    results = await asyncio.gather(*(score(m) for m in goal.metrics))
    scores = {m: r.value for m, r in zip(goal.metrics, results, strict=True) if r.value is not None}
    if pair.id in question_fits:
        scores["question_fit"] = question_fits[pair.id]
    reasons = {m: r.reason for m, r in zip(goal.metrics, results, strict=True)}
    return {
        "pairs": {
            pair.id: pair.model_copy(
                update={"scores": scores, "reasons": reasons, "status": "judged"}
            )
        }
    }
