"""Node: the judges' self-test, run once per run beside the first pass's judging.

Builds probes from the run's own data (`evaluators.selftest`) and records each metric's
discrimination in `judge_selftest`; `check_constraints` lets only metrics that passed
decide acceptance.
"""

from __future__ import annotations

import time
from typing import Any

from langgraph.runtime import Runtime

from personagen.errors import LLMError
from personagen.evaluators.relevance import embedding_cache
from personagen.evaluators.selftest import Probe, best_sentence, passage_around, run_selftest
from personagen.graph.context import RunContext
from personagen.nodes._common import prompt_vars
from personagen.nodes._instrument import instrumented
from personagen.prompts.library import render
from personagen.prompts.schemas import QuestionsOut
from personagen.state.graph import SelfTestTask
from personagen.state.metadata import Event

FREE_PROBES = 8
"""Probes per run: the judges that need no model (grounding, relevance) are measured on all
of them, model-judged metrics on the first `selftest_probes`. Probes come from generated
questions (free), else from passages the model writes a question for."""


@instrumented("selftest_judges")
async def selftest_judges(task: SelfTestTask, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Probe every metric of the goal with known-good and known-bad pairs from the data."""
    ctx, goal, persona = runtime.context, task["goal"], task["persona"]
    wanted = max(2, int(goal.param("selftest_probes")))
    cache = embedding_cache(ctx.judge)
    started = time.monotonic()
    probes: list[Probe] = []
    used: set[tuple[str, int | None]] = set()
    for pair in task["pairs"]:
        if len(probes) >= max(wanted, FREE_PROBES):
            break
        key = (pair.seed_doc_id or "", pair.seed_start)
        if pair.origin != "generated" or pair.seed_doc_id is None or key in used:
            continue  # one probe per excerpt: a wrong answer must come from elsewhere
        document = ctx.store.get_text(pair.seed_doc_id)
        start = pair.seed_start or 0
        end = pair.seed_end if pair.seed_end is not None else len(document)
        found = await best_sentence(
            pair.question, document[start:end], start, pair.seed_doc_id, cache
        )
        if found is not None:
            used.add(key)
            best, candidates = found
            passage = passage_around(best, candidates, document)
            probes.append(Probe(pair.question, passage, best.text))
    source = "questions"
    events: list[Event] = []
    if len(probes) < FREE_PROBES:
        # Too few generated questions (custom or hook questions only): the model writes a
        # question for passages spread over the data, one small call each. The judges that
        # need no model take all of them; with 3 probes one unlucky pair failed a judge.
        source = "passages" if not probes else "questions"
        probes += await _passage_probes(ctx, task, FREE_PROBES - len(probes), used, events)
    report = await run_selftest(
        ctx.judge,
        goal,
        persona,
        probes,
        goal.metrics,
        source=source,
        min_auc=float(goal.param("selftest_min_auc")),
        plugin_semaphore=ctx.semaphore,
        model_probes=wanted,
    )
    report = report.model_copy(update={"seconds": round(time.monotonic() - started, 3)})
    for metric in report.failed():
        events.append(
            Event(
                level="warning",
                stage="selftest_judges",
                message=f"judge {metric.metric} failed its self-test ({metric.reason}); it "
                "does not decide acceptance, and pairs it would accept are 'unverified'",
            )
        )
    return {"judge_selftest": report, "events": events}


async def _passage_probes(
    ctx: RunContext,
    task: SelfTestTask,
    needed: int,
    used: set[tuple[str, int | None]],
    events: list[Event],
) -> list[Probe]:
    """Probes from passages spread over the data, with a question the run's model writes."""
    goal, persona = task["goal"], task["persona"]
    excerpts = ctx.store.chunks(
        task["doc_ids"],
        chunk_size=int(goal.param("excerpt_chars")),
        chunk_overlap=0,
        splitter="recursive",
    )
    fresh = [c for c in excerpts if (c.doc_id, c.start) not in used]
    if not fresh:
        return []
    # Spread the picks over the whole data, not its first pages.
    step = max(1, len(fresh) // needed)
    picks = fresh[::step][:needed]
    probes: list[Probe] = []
    for excerpt in picks:
        messages = render(
            goal.prompts["generate_questions"],
            embedded=ctx.llm.small_model,
            **prompt_vars(persona, goal),
            excerpt=excerpt.text,
            source=excerpt.doc_id,
            n=1,
            avoid=[],
        )
        try:
            out = await ctx.llm.structured(messages, QuestionsOut)
        except LLMError as exc:
            events.append(
                Event(
                    level="warning",
                    stage="selftest_judges",
                    message=f"no probe question from excerpt {excerpt.id}: {exc}",
                    item=excerpt.id,
                )
            )
            continue
        question = next((q.question.strip() for q in out.questions if q.question.strip()), "")
        if not question:
            continue
        document = ctx.store.get_text(excerpt.doc_id)
        found = await best_sentence(
            question, excerpt.text, excerpt.start, excerpt.doc_id, embedding_cache(ctx.judge)
        )
        if found is not None:
            best, candidates = found
            probes.append(Probe(question, passage_around(best, candidates, document), best.text))
    return probes
