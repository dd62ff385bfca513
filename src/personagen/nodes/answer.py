"""Node: answer one question from the top-k BM25 chunks, with the source spans it rests on.

Runs once per question (a `Send` task), so finished answers are checkpointed one by one.
"Not answerable from the data" is a valid outcome: it is kept and reported, never invented.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from personagen.errors import StructuredOutputError
from personagen.evaluators.grounding import ground_quotes
from personagen.graph.context import RunContext
from personagen.nodes._common import prompt_vars
from personagen.nodes._instrument import instrumented
from personagen.prompts.library import render
from personagen.prompts.schemas import AnswerOut, extractive_answer_schema
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
    messages = render(
        goal.prompts["answer"],
        embedded=ctx.llm.small_model,
        **prompt_vars(persona, goal),
        contexts=[c.text for c in contexts],
        question=pair.question,
        feedback=pair.feedback,
    )
    schema: type[AnswerOut] = AnswerOut
    if ctx.llm.small_model:
        schema = extractive_answer_schema([c.text for c in contexts])
    try:
        out = await ctx.llm.structured(messages, schema, one_off=schema is not AnswerOut)
    except StructuredOutputError as exc:
        update |= {"status": "failing", "error": str(exc), "feedback": [f"answering failed: {exc}"]}
        return {"pairs": {pair.id: pair.model_copy(update=update)}}
    answer_text = out.answer.strip()
    if schema is not AnswerOut and out.answerable and out.quotes:
        # Tiny models paraphrase into nonsense; their verbatim picks are reliable. The answer
        # is the picked sentences themselves: faithful to the sources by construction.
        answer_text = " ".join(dict.fromkeys(q.strip() for q in out.quotes))
    answerable = bool(out.answerable and answer_text)
    spans, unmatched = (
        ground_quotes(out.quotes, contexts, ctx.store.get_text) if answerable else ([], [])
    )
    update |= {
        "answer": answer_text if answerable else "",
        "answerable": answerable,
        "spans": spans,
        "unmatched_quotes": unmatched,
        "status": "answered",
    }
    return {"pairs": {pair.id: pair.model_copy(update=update)}}
