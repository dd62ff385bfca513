"""Judge and gate one pair: shared by the judging step and by edits made after it.

`evaluate` judges each answered pair, `check_constraints` gates it; a hook or a reviewer
that edits an answer after those steps (`after_evaluation`, `before_output`, a review) goes
through the same two functions, so every answer is judged, whoever wrote it.
"""

from __future__ import annotations

from collections.abc import Iterable

from personagen.evaluators.constraints import check_constraints_of
from personagen.evaluators.judging import (
    DETERMINISTIC_METRICS,
    SKIPPED,
    PairToJudge,
    judge_pair,
)
from personagen.evaluators.support import SourceSentence, source_sentences
from personagen.graph.context import RunContext
from personagen.llm._text import sentences
from personagen.nodes._common import live_questions
from personagen.state.goal import ResolvedGoal
from personagen.state.graph import State
from personagen.state.items import PersonaProfile, QAPair
from personagen.state.metadata import JudgeSelfTest
from personagen.state.results import Violation

NOT_ANSWERABLE = "the data does not answer this question"


def pair_to_judge(pair: QAPair, other_questions: list[str]) -> PairToJudge:
    """What the judges see of `pair`: its contexts, sources, spans and rivals."""
    sources = source_sentences(pair.contexts)
    # Spans outside the contexts (an edited answer grounded in another document) count too.
    sources += [SourceSentence(s.doc_id, s.start, s.end, s.text) for s in pair.spans]
    return PairToJudge(
        question=pair.question,
        answer=pair.answer,
        contexts=[c.text for c in pair.contexts],
        sources=sources,
        span_texts=[s.text for s in pair.spans],
        other_questions=other_questions,
        # A sentence the answer rests on (its spans) is no rival to it.
        alternatives=[
            s
            for c in pair.contexts
            for s in sentences(c.text)
            if not any(_same_text(s, span.text) for span in pair.spans)
        ],
    )


def _same_text(a: str, b: str) -> bool:
    a, b = " ".join(a.split()), " ".join(b.split())
    return a in b or b in a


async def judge(
    pair: QAPair,
    goal: ResolvedGoal,
    persona: PersonaProfile,
    ctx: RunContext,
    *,
    questions: Iterable[str],
    selftest: JudgeSelfTest | None,
) -> QAPair:
    """`pair` scored on every metric of the goal (status `judged`).

    An answer set on a pair the model called unanswerable makes it answerable; only a pair
    without an answer is left unjudged.
    """
    if not pair.answer.strip():
        return pair.model_copy(update={"status": "judged", "answerable": False})
    others = [q for q in questions if q != pair.question]
    gates = {
        m: minimum
        for m, minimum in goal.baseline.items()
        if m in DETERMINISTIC_METRICS and (selftest is None or selftest.trusted(m))
    }
    verdicts = await judge_pair(
        ctx.judge,
        goal,
        persona,
        pair_to_judge(pair, others),
        plugin_semaphore=ctx.semaphore,
        hard_gates=gates,
    )
    scores = {m: r.value for m, r in verdicts.scores.items() if r.value is not None}
    if verdicts.question_fit is not None:
        scores["question_fit"] = verdicts.question_fit
    reasons = {m: r.reason for m, r in verdicts.scores.items()}
    return pair.model_copy(
        update={"scores": scores, "reasons": reasons, "status": "judged", "answerable": True}
    )


async def _judge_in(state: State, pair: QAPair, ctx: RunContext) -> QAPair:
    return await judge(
        pair,
        state["goal"],
        state["persona"],
        ctx,
        questions=live_questions(state.get("pairs", {}).values()),
        selftest=state.get("judge_selftest"),
    )


async def judged_by_reviewer(pair: QAPair, state: State, ctx: RunContext) -> QAPair:
    """A reviewer's own answer, scored like any other; the reviewer's acceptance stands.

    The scores and the judges' reasons are kept on the pair (and in the bundle), so what a
    human wrote is measured too; a human decision is not overruled by a judge.
    """
    judged = await _judge_in(state, pair, ctx)
    return judged.model_copy(update={"status": pair.status})


async def rejudged(pair: QAPair, state: State, ctx: RunContext) -> QAPair:
    """An edited pair judged and gated again, as the judging step would have."""
    judged = await _judge_in(state, pair, ctx)
    violations = await violations_of(judged, state, ctx)
    return gate(judged, state["goal"].baseline, violations, state.get("judge_selftest"))


async def violations_of(pair: QAPair, state: State, ctx: RunContext) -> list[Violation]:
    """The constraint rules the pair violates (and the persona-language check)."""
    check_language = bool(state["goal"].param("check_language"))
    return await check_constraints_of(
        ctx.llm,
        state["spec"].constraints,
        question=pair.question,
        answer=pair.answer if pair.answerable else None,
        language=state["persona"].language if check_language else None,
        semaphore=ctx.semaphore,
    )


def gate(
    pair: QAPair,
    baseline: dict[str, float],
    violations: list[Violation],
    selftest: JudgeSelfTest | None,
) -> QAPair:
    """The pair's status: accepted, unverified, unanswerable or failing (with reasons).

    A metric that failed the judges' self-test cannot accept: a pair passing every gate is
    `unverified` (written apart, never as accepted) while such a metric is in the baseline.
    It can still stop a pair: a judge that errs on the strict side costs pairs, never
    correctness.
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
        value = pair.scores.get(metric)
        if selftest is not None and not selftest.trusted(metric):
            untrusted.append(metric)
            if value is None:
                continue  # an untrusted judge that could not judge says nothing
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
