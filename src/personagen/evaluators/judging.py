"""Judge one question/answer pair on a goal's metrics: one function for real pairs and probes.

The judges' self-test (`evaluators.selftest`) probes the very same function a run's pairs go
through, so what it measures is what decides acceptance.

Metrics:
- `grounding` (no model): share of the answer's claims supported by a source sentence
  (`evaluators.support`): numbers, code tokens and negation must agree.
- `relevance` (embeddings + BM25, no chat model): contrastive, see `evaluators.relevance`.
- `faithfulness`, `answer_relevancy`, `context_precision`: Ragas, through the judge model.
  An answer made only of verbatim source spans is faithful by construction (no call).
- `persona_fit`: the LLM persona-fit judge.
- anything else: a metric plugin.
Every value is in [0, 1] (`MetricScore` refuses anything else) or None with the reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from personagen.errors import StructuredOutputError
from personagen.evaluators import compact
from personagen.evaluators.grounding import is_extractive
from personagen.evaluators.persona_fit import judge_persona_fit
from personagen.evaluators.plugins import score_plugin_metric
from personagen.evaluators.ragas_metrics import RAGAS_METRICS, MetricScore, RagasJudge
from personagen.evaluators.relevance import contrastive_relevance, embedding_cache
from personagen.evaluators.support import SourceSentence, check_claims
from personagen.llm.client import LLMClient
from personagen.state.goal import ResolvedGoal
from personagen.state.items import PersonaProfile

__all__ = ["PairToJudge", "Verdicts", "judge_pair"]

DETERMINISTIC_METRICS = ("grounding", "relevance")
SKIPPED = "not judged: the pair already fails"
"""How a metric skipped after a failed cheap gate explains itself."""


@dataclass(frozen=True)
class PairToJudge:
    """What the judges see of a pair."""

    question: str
    answer: str
    contexts: Sequence[str]
    """The retrieved context texts (what the answer had to go on)."""
    sources: Sequence[SourceSentence]
    """Candidate source sentences for the grounding check (contexts, then the spans)."""
    span_texts: Sequence[str] = ()
    other_questions: Sequence[str] = ()
    alternatives: Sequence[str] = ()
    """Sentences the retriever found for the question (the relevance contrast)."""


@dataclass
class Verdicts:
    """Every metric's score for one pair, and the persona judge's question fit."""

    scores: dict[str, MetricScore] = field(default_factory=dict)
    question_fit: float | None = None


def ragas_judge(client: LLMClient, strictness: int) -> RagasJudge:
    """The client's Ragas judge (built once per client and strictness)."""
    key = f"ragas:{strictness}"
    judge = client.cache.get(key)
    if judge is None:
        judge = client.cache[key] = RagasJudge(client, relevancy_strictness=strictness)
    return judge


async def judge_pair(
    client: LLMClient,
    goal: ResolvedGoal,
    persona: PersonaProfile,
    pair: PairToJudge,
    *,
    plugin_semaphore: asyncio.Semaphore,
    metrics: Sequence[str] | None = None,
    hard_gates: dict[str, float] | None = None,
) -> Verdicts:
    """Score `pair` on `metrics` (default: the goal's) with the judge model `client`.

    `hard_gates` (metric -> minimum, for metrics that need no chat model) are scored first;
    when the pair falls below one, the model-judged metrics are not called: their verdict
    could not save the pair, and their tokens are most of a run's cost.
    """
    verdicts = Verdicts()
    strictness = int(goal.param("answer_relevancy_strictness"))

    async def score(metric: str) -> MetricScore:
        if metric == "grounding":
            checks = check_claims(pair.answer, pair.sources)
            supported = sum(c.supported for c in checks)
            unsupported = [c for c in checks if not c.supported]
            why = f"{supported} of {len(checks)} claim(s) supported by a source sentence"
            if unsupported:
                why += f"; e.g. {unsupported[0].claim[:80]!r}: {unsupported[0].why}"
            return MetricScore(round(supported / len(checks), 4), why)
        if metric == "relevance":
            result = await contrastive_relevance(
                pair.question,
                pair.answer,
                other_questions=pair.other_questions,
                alternatives=pair.alternatives,
                cache=embedding_cache(client),
                evidence=pair.span_texts,
            )
            return MetricScore(result.value, result.reason)
        if metric == "faithfulness" and is_extractive(pair.answer, list(pair.span_texts)):
            return MetricScore(1.0, "extractive: the answer is made of verbatim source spans")
        if metric in ("faithfulness", "context_precision"):
            try:
                if metric == "faithfulness":
                    return await compact.faithfulness(
                        client, answer=pair.answer, contexts=list(pair.contexts)
                    )
                return await compact.context_precision(
                    client, question=pair.question, answer=pair.answer, contexts=list(pair.contexts)
                )
            except StructuredOutputError as exc:
                return MetricScore(None, f"{metric} could not be judged: {exc}")
        if metric in RAGAS_METRICS:
            return await ragas_judge(client, strictness).score(
                metric, question=pair.question, answer=pair.answer, contexts=list(pair.contexts)
            )
        if metric == "persona_fit":
            try:
                value, question_fit, reason = await judge_persona_fit(
                    client, goal, persona, question=pair.question, answer=pair.answer
                )
            except StructuredOutputError as exc:
                return MetricScore(None, f"persona_fit could not be judged: {exc}")
            verdicts.question_fit = question_fit
            return MetricScore(value, reason)
        # User plugins may call anything: bounded by the run's plugin semaphore.
        async with plugin_semaphore:
            value, reason = await score_plugin_metric(
                metric,
                question=pair.question,
                answer=pair.answer,
                contexts=list(pair.contexts),
                persona=persona,
            )
        return MetricScore(round(value, 4), reason)

    names = list(metrics if metrics is not None else goal.metrics)
    first = [m for m in names if m in (hard_gates or {}) and m in DETERMINISTIC_METRICS]
    for metric in first:
        verdicts.scores[metric] = await score(metric)
    failed = [
        m
        for m in first
        if (value := verdicts.scores[m].value) is None or value < (hard_gates or {})[m]
    ]
    rest = [m for m in names if m not in verdicts.scores]
    if failed:
        skipped = f"{SKIPPED} {', '.join(failed)}"
        verdicts.scores |= {m: MetricScore(None, skipped) for m in rest}
    else:
        results = await asyncio.gather(*(score(m) for m in rest))
        verdicts.scores |= dict(zip(rest, results, strict=True))
    verdicts.scores = {m: verdicts.scores[m] for m in names}
    return verdicts
