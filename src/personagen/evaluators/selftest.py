"""The judges' self-test: does each metric tell a right answer from a wrong one, here?

A judge is measured, not trusted. Before a run's pairs are judged, each metric scores a few
probes built from the run's own data:

- known-good: a question with the passage it was drawn from, answered with the passage's
  sentence that best matches it, verbatim;
- known-bad: the same question and passage, answered with another probe's answer (a real
  sentence of the data, about something else).

Probe questions are the run's generated questions (each drawn from an excerpt), or, when
there are too few (custom or hook-made questions only), questions the run's model writes for
passages spread over the data. A metric passes when its AUC over the probes (the chance a
good probe outscores a bad one) reaches `min_auc`, and so does its balanced accuracy at its
baseline (good probes pass, bad ones are stopped): a judge that ranks well but passes
everything, or nothing, at its threshold decides nothing. Probes are short (one passage, one
sentence), so they cost a fraction of a real pair's judging, and the response cache makes a
rerun's self-test free.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from personagen.evaluators.judging import DETERMINISTIC_METRICS, PairToJudge, judge_pair
from personagen.evaluators.relevance import EmbeddingCache, rank_candidates
from personagen.evaluators.support import SourceSentence, checkable, sentences_with_offsets
from personagen.llm._text import sentences
from personagen.llm.client import LLMClient
from personagen.prompts.schemas import is_heading
from personagen.state.goal import ResolvedGoal
from personagen.state.items import PersonaProfile
from personagen.state.metadata import JudgeSelfTest, MetricSelfTest

__all__ = [
    "Probe",
    "auc",
    "balanced_accuracy",
    "best_sentence",
    "passage_around",
    "run_selftest",
]

PASSAGE_CHARS = 400
"""Upper bound on a probe passage: the best sentence and its neighbours."""


@dataclass(frozen=True)
class Probe:
    """A question, the passage it is about, and the passage sentence that answers it."""

    question: str
    passage: SourceSentence
    answer: str


def auc(good: Sequence[float | None], bad: Sequence[float | None]) -> float | None:
    """P(good > bad) + P(tie)/2 over all good/bad pairs; a missing score counts as 0."""
    if not good or not bad:
        return None
    g = [0.0 if v is None else v for v in good]
    b = [0.0 if v is None else v for v in bad]
    wins = sum((x > y) + 0.5 * (x == y) for x in g for y in b)
    return round(wins / (len(g) * len(b)), 4)


def balanced_accuracy(
    good: Sequence[float | None], bad: Sequence[float | None], threshold: float | None
) -> float | None:
    """Mean of the share of good probes at or above `threshold` and bad ones below it."""
    if threshold is None or not good or not bad:
        return None
    passed = sum(1 for v in good if v is not None and v >= threshold) / len(good)
    stopped = sum(1 for v in bad if v is None or v < threshold) / len(bad)
    return round((passed + stopped) / 2, 4)


def _sentence_spans(text: str, base: int, doc_id: str) -> list[SourceSentence]:
    """The text's sentences that could be an answer, with absolute offsets.

    20-400 characters, not a heading, and checkable as a claim: a known-good probe answer
    must be one that a working judge can confirm.
    """
    return [
        s
        for s in sentences_with_offsets(doc_id, text, base)
        if 20 <= len(s.text) <= 400 and not is_heading(s.text) and checkable(s.text)
    ]


async def best_sentence(
    question: str, text: str, base: int, doc_id: str, cache: EmbeddingCache | None
) -> tuple[SourceSentence, list[SourceSentence]] | None:
    """The sentence of `text` that best matches `question`, and all candidate sentences."""
    candidates = _sentence_spans(text, base, doc_id)
    if not candidates:
        return None
    ranked = await rank_candidates(question, [c.text for c in candidates], cache)
    return candidates[ranked[0][0]], candidates


def passage_around(
    best: SourceSentence, candidates: Sequence[SourceSentence], document: str
) -> SourceSentence:
    """The best sentence with as many neighbours as fit in `PASSAGE_CHARS`."""
    index = next(i for i, c in enumerate(candidates) if c.start == best.start)
    lo = hi = index
    while True:
        grown = False
        for j in (hi + 1, lo - 1):
            if 0 <= j < len(candidates):
                start = min(candidates[lo].start, candidates[j].start)
                end = max(candidates[hi].end, candidates[j].end)
                if end - start <= PASSAGE_CHARS:
                    lo, hi, grown = min(lo, j), max(hi, j), True
        if not grown:
            break
    start, end = candidates[lo].start, candidates[hi].end
    return SourceSentence(best.doc_id, start, end, document[start:end])


def _bad_answer_for(index: int, probes: Sequence[Probe]) -> str | None:
    """Another probe's answer that is not part of this probe's passage."""
    mine = probes[index]
    for step in range(1, len(probes)):
        other = probes[(index + step) % len(probes)]
        if other.answer not in mine.passage.text and other.answer != mine.answer:
            return other.answer
    return None


async def run_selftest(
    client: LLMClient,
    goal: ResolvedGoal,
    persona: PersonaProfile,
    probes: Sequence[Probe],
    metrics: Sequence[str],
    *,
    source: str,
    min_auc: float,
    plugin_semaphore: asyncio.Semaphore,
    model_probes: int | None = None,
) -> JudgeSelfTest:
    """Judge every probe right and wrong on `metrics`; a metric passes at AUC >= `min_auc`.

    Metrics that need no judge model (`grounding`, `relevance`) cost nothing to probe and
    take every probe; model-judged ones only the first `model_probes` (all by default).
    """
    questions = [p.question for p in probes]
    jobs: list[tuple[bool, PairToJudge, int]] = []
    for i, probe in enumerate(probes):
        bad = _bad_answer_for(i, probes)
        if bad is None:
            continue
        others = [q for q in questions if q != probe.question]
        alternatives = [s for s in sentences(probe.passage.text)]
        for good, answer in ((True, probe.answer), (False, bad)):
            jobs.append(
                (
                    good,
                    PairToJudge(
                        question=probe.question,
                        answer=answer,
                        contexts=[probe.passage.text],
                        sources=[
                            probe.passage,
                            *_sentence_spans(
                                probe.passage.text, probe.passage.start, probe.passage.doc_id
                            ),
                        ],
                        # A verbatim answer's span is itself (as answer grounding finds it).
                        span_texts=[answer] if answer in probe.passage.text else [],
                        other_questions=others,
                        alternatives=alternatives,
                    ),
                    i,
                )
            )
    n_probes = sum(1 for good, _, _ in jobs if good)
    limit = len(probes) if model_probes is None else model_probes
    cheap = [m for m in metrics if m in DETERMINISTIC_METRICS]
    if n_probes < 2:
        return JudgeSelfTest(
            probes=n_probes,
            source="none",
            min_auc=min_auc,
            metrics={
                m: MetricSelfTest(
                    metric=m, auc=None, passed=False, reason="too few probes to measure it"
                )
                for m in metrics
            },
            note="the data gave fewer than 2 usable probes: no judge could be measured",
        )
    results = await asyncio.gather(
        *(
            judge_pair(
                client,
                goal,
                persona,
                pair,
                plugin_semaphore=plugin_semaphore,
                metrics=metrics if index < limit else cheap,
            )
            for _, pair, index in jobs
        )
    )
    report: dict[str, MetricSelfTest] = {}
    for metric in metrics:
        scored = [
            (g, r.scores[metric].value)
            for (g, _, _), r in zip(jobs, results, strict=True)
            if metric in r.scores
        ]
        good_scores = [v for g, v in scored if g]
        bad_scores = [v for g, v in scored if not g]
        value = auc(good_scores, bad_scores)
        threshold = goal.baseline.get(metric)
        accuracy = balanced_accuracy(good_scores, bad_scores, threshold)
        passed = value is not None and value >= min_auc
        reason = f"AUC {value if value is not None else 0:.2f}"
        if accuracy is not None:
            # Ranking right above wrong is not enough: at its baseline the metric must
            # also pass right answers and stop wrong ones, or as a gate it decides nothing.
            passed = passed and accuracy >= min_auc
            reason += f", balanced accuracy {accuracy:.2f} at its baseline {threshold:.2f}"
        reason += f" over {len(good_scores)} good and {len(bad_scores)} bad probes " + (
            "(passed)" if passed else f"(below {min_auc:.2f}: it cannot tell right from wrong)"
        )
        if metric == "faithfulness":
            # Known-good answers are verbatim, faithful by construction: what this measured
            # is the judge model on wrong answers, not on right paraphrases.
            reason += "; right answers were verbatim, so paraphrases were not measured"
        report[metric] = MetricSelfTest(
            metric=metric,
            auc=value,
            accuracy=accuracy,
            good=good_scores,
            bad=bad_scores,
            passed=passed,
            reason=reason,
        )
    return JudgeSelfTest(
        probes=n_probes,
        source=source,
        min_auc=min_auc,
        metrics=report,
    )
