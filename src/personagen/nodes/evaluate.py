"""Node: judge one answered pair on every metric of the goal (a `Send` task)."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from personagen.evaluators.judging import DETERMINISTIC_METRICS, PairToJudge, judge_pair
from personagen.evaluators.support import SourceSentence, source_sentences
from personagen.graph.context import RunContext
from personagen.llm._text import sentences
from personagen.nodes._instrument import instrumented
from personagen.state.graph import JudgeTask
from personagen.state.items import QAPair


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
        alternatives=[s for c in pair.contexts for s in sentences(c.text)],
    )


@instrumented("evaluate")
async def evaluate(task: JudgeTask, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Score the pair on every metric of the goal.

    Every pair with an answer is judged, whoever wrote the answer: the model, a hook or a
    reviewer (an answer set on a pair the model called unanswerable makes it answerable).
    Only a pair without an answer is left unjudged.
    """
    ctx, goal, persona, pair = runtime.context, task["goal"], task["persona"], task["pair"]
    if not pair.answer.strip():
        return {
            "pairs": {pair.id: pair.model_copy(update={"status": "judged", "answerable": False})}
        }
    others = [q for q in task.get("questions", []) if q != pair.question]
    selftest = task.get("selftest")
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
    update = {"scores": scores, "reasons": reasons, "status": "judged", "answerable": True}
    return {"pairs": {pair.id: pair.model_copy(update=update)}}
