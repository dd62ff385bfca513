"""Node: the questions this persona would ask, spread over the documents, plus custom ones.

Excerpts are taken round-robin across documents and spread within each document, so a long
document does not crowd out a short one. Custom questions are kept verbatim. Generated
questions go through question hygiene (runaway text cut or rejected, echoes of the prompt's
examples rejected), then near-duplicates are removed; every removal is recorded with its
reason (`removed_questions`, `removed_duplicates`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph.runtime import Runtime

from personagen.errors import StructuredOutputError
from personagen.evaluators.dedup import dedupe
from personagen.evaluators.question_hygiene import QuestionHygiene
from personagen.graph.context import RunContext
from personagen.nodes._common import pair_id, prompt_vars
from personagen.nodes._instrument import instrumented
from personagen.prompts.library import render
from personagen.prompts.schemas import QuestionsOut
from personagen.state.documents import Chunk
from personagen.state.graph import State
from personagen.state.items import QAPair
from personagen.state.metadata import Event

_SPREAD = 0.6180339887  # golden-ratio stepping spreads picks evenly over a document


def spread_excerpts(excerpts: list[Chunk]) -> list[Chunk]:
    """Order excerpts round-robin over documents, each document's picks spread out."""
    by_doc: dict[str, list[Chunk]] = {}
    for excerpt in excerpts:
        by_doc.setdefault(excerpt.doc_id, []).append(excerpt)
    queues = [
        sorted(chunks, key=lambda c: ((c.index * _SPREAD) % 1.0, c.index))
        for chunks in by_doc.values()
    ]
    ordered: list[Chunk] = []
    for position in range(max((len(q) for q in queues), default=0)):
        ordered.extend(q[position] for q in queues if position < len(q))
    return ordered


@instrumented("generate_questions")
async def generate_questions(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Generate questions until `num_questions` distinct ones exist (or excerpts run out)."""
    ctx, goal, persona = runtime.context, state["goal"], state["persona"]
    wanted = int(goal.param("num_questions"))
    per_excerpt = int(goal.param("questions_per_excerpt"))
    threshold = float(goal.param("dedup_threshold")) / 100.0
    doc_ids = [d.id for d in state["documents"]]
    # The answers' retrieval index, built while the question calls wait.
    ctx.prefetch_index(
        doc_ids,
        chunk_size=int(goal.param("chunk_size")),
        chunk_overlap=int(goal.param("chunk_overlap")),
        language=persona.language,
    )
    excerpts = spread_excerpts(
        ctx.store.chunks(
            doc_ids,
            chunk_size=int(goal.param("excerpt_chars")),
            chunk_overlap=0,
            splitter="recursive",
        )
    )
    sources = {d.id: d.source for d in state["documents"]}
    custom = list(dict.fromkeys(persona.custom_questions))
    texts: list[str] = list(custom)
    seeds: list[Chunk | None] = [None] * len(custom)
    events: list[Event] = []
    removed: list[dict[str, Any]] = []
    cleaned: list[dict[str, Any]] = []
    hygiene = QuestionHygiene.for_goal(goal.prompts)
    kept = list(range(len(texts)))

    async def ask(excerpt: Chunk, avoid: list[str]) -> list[str]:
        messages = render(
            goal.prompts["generate_questions"],
            embedded=ctx.llm.small_model,
            **prompt_vars(persona, goal),
            excerpt=excerpt.text,
            source=sources.get(excerpt.doc_id, excerpt.doc_id),
            n=per_excerpt,
            avoid=avoid[-20:],
        )
        out = await ctx.llm.structured(messages, QuestionsOut)
        return [q.question.strip() for q in out.questions if q.question.strip()]

    position = 0
    while len(kept) - len(custom) < wanted and position < len(excerpts):
        missing = wanted - (len(kept) - len(custom))
        batch_size = max(1, min(ctx.max_concurrency, -(-missing // per_excerpt)))
        batch = excerpts[position : position + batch_size]
        position += len(batch)
        avoid = [texts[i] for i in kept]
        results = await asyncio.gather(*(ask(e, avoid) for e in batch), return_exceptions=True)
        for excerpt, result in zip(batch, results, strict=True):
            if isinstance(result, StructuredOutputError):
                events.append(
                    Event(
                        level="warning",
                        stage="generate_questions",
                        message=f"no questions from excerpt {excerpt.id}: {result}",
                        item=excerpt.id,
                    )
                )
                continue
            if isinstance(result, BaseException):
                raise result
            for question in result:
                verdict = hygiene.check(question, source=excerpt.text)
                record = verdict.record("generate_questions", excerpt=excerpt.id)
                if record is not None:
                    cleaned.append(record)
                if verdict.question is not None:
                    texts.append(verdict.question)
                    seeds.append(excerpt)
        kept, pairs_removed = dedupe(texts, protected=set(range(len(custom))), threshold=threshold)
        removed = [
            {"question": texts[dup], "duplicate_of": texts[orig], "similarity": round(sim, 3)}
            for orig, dup, sim in pairs_removed
        ]

    generated = [i for i in kept if i >= len(custom)][:wanted]
    if len(generated) < wanted:
        events.append(
            Event(
                level="warning",
                stage="generate_questions",
                message=f"only {len(generated)} distinct questions could be generated of "
                f"{wanted} wanted ({len(excerpts)} excerpts in the data; "
                f"{sum(1 for r in cleaned if r['action'] == 'removed')} removed by question "
                f"hygiene, {len(removed)} near-duplicates: see metadata.json)",
            )
        )
    pairs: dict[str, QAPair] = {}
    for index in [*range(len(custom)), *generated]:
        seed = seeds[index]
        pid = pair_id(texts[index], pairs)
        pairs[pid] = QAPair(
            id=pid,
            question=texts[index],
            origin="custom" if index < len(custom) else "generated",
            seed_doc_id=seed.doc_id if seed else None,
            seed_start=seed.start if seed else None,
            seed_end=seed.end if seed else None,
        )
    return {
        "pairs": pairs,
        "removed_duplicates": removed,
        "removed_questions": cleaned,
        "events": events,
    }
