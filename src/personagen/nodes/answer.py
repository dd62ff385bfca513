"""Node: answer one question from the top-k BM25 chunks, with the source spans it rests on.

Runs once per question (a `Send` task), so finished answers are checkpointed one by one.
"Not answerable from the data" is a valid outcome: it is kept and reported, never invented.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from personagen.errors import StructuredOutputError
from personagen.evaluators.grounding import ground_quotes
from personagen.evaluators.lexical import content_stems
from personagen.evaluators.relevance import embedding_cache, rank_candidates
from personagen.evaluators.support import ground_answer
from personagen.graph.context import RunContext
from personagen.nodes._common import prompt_vars
from personagen.nodes._instrument import instrumented
from personagen.prompts.library import render
from personagen.prompts.schemas import AnswerOut, candidate_sentences, extractive_answer_schema
from personagen.state.graph import AnswerTask
from personagen.state.items import RetrievedContext


@instrumented("answer")
async def answer(task: AnswerTask, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Retrieve, answer only from the retrieved chunks, and ground the quotes to spans."""
    ctx, goal, persona = runtime.context, task["goal"], task["persona"]
    pair = task["pair"]
    _, index = await ctx.aindex(
        task["doc_ids"],
        chunk_size=int(goal.param("chunk_size")),
        chunk_overlap=int(goal.param("chunk_overlap")),
        language=persona.language,
    )
    hits = index.search(pair.question, int(goal.param("top_k")))
    contexts = [
        RetrievedContext(
            chunk_id=c.id, doc_id=c.doc_id, start=c.start, end=c.end, score=round(s, 4), text=c.text
        )
        for c, s in hits
    ]
    update: dict[str, Any] = {
        "contexts": contexts,
        "answer_attempts": pair.answer_attempts + 1,
        "iteration": task["iteration"],
        "error": None,
        "scores": {},
        "reasons": {},
        "violations": [],
    }
    if not contexts:
        update |= {"answerable": False, "answer": "", "spans": [], "status": "answered"}
        return {"pairs": {pair.id: pair.model_copy(update=update)}}
    schema: type[AnswerOut] = AnswerOut
    passages = [c.text for c in contexts]
    options: list[str] = []
    if ctx.llm.small_model:
        # A tiny model cannot find the answer in four chunks, but it can choose among the
        # few sentences that best match the question (BM25 + embeddings).
        candidates = candidate_sentences(passages)
        ranked = await rank_candidates(pair.question, candidates, embedding_cache(ctx.llm))
        options = [candidates[i] for i, _ in ranked[: int(goal.param("answer_options"))]]
        schema = extractive_answer_schema(options=options)
        passages = options or passages
    messages = render(
        goal.prompts["answer"],
        embedded=ctx.llm.small_model,
        **prompt_vars(persona, goal),
        contexts=passages,
        question=pair.question,
        feedback=pair.feedback,
    )
    try:
        out = await ctx.llm.structured(messages, schema, one_off=schema is not AnswerOut)
    except StructuredOutputError as exc:
        update |= {"status": "failing", "error": str(exc), "feedback": [f"answering failed: {exc}"]}
        return {"pairs": {pair.id: pair.model_copy(update=update)}}
    answer_text = out.answer.strip()
    quotes = list(out.quotes)
    if schema is not AnswerOut:
        if not (out.answerable and quotes) and options and _covers(options[0], pair.question):
            # The model declined, but the best-matching sentence takes up most of the
            # question: answer with it (the judges still decide).
            quotes = [options[0]]
        if quotes:
            # Tiny models paraphrase into nonsense; their verbatim picks are reliable. The
            # answer is the picked sentences themselves: faithful to the sources by
            # construction.
            answer_text = " ".join(dict.fromkeys(q.strip() for q in quotes))
        answerable = bool(quotes)
    else:
        answerable = bool(out.answerable and answer_text)
    spans, unmatched = (
        ground_quotes(quotes, contexts, ctx.store.get_text) if answerable else ([], [])
    )
    if answerable and not spans:
        # No quote was verbatim: ground the answer claim by claim instead.
        spans, _ = ground_answer(answer_text, contexts, ctx.store.get_text)
    update |= {
        "answer": answer_text if answerable else "",
        "answerable": answerable,
        "spans": spans,
        "unmatched_quotes": unmatched,
        "status": "answered",
    }
    return {"pairs": {pair.id: pair.model_copy(update=update)}}


def _covers(sentence: str, question: str) -> bool:
    """Whether `sentence` holds at least half of the question's content words."""
    wanted = set(content_stems(question))
    return bool(wanted) and len(wanted & set(content_stems(sentence))) / len(wanted) >= 0.5
