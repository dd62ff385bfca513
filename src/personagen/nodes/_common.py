"""Helpers shared by several nodes (ids, excerpt lookup, prompt variables). No node logic."""

from __future__ import annotations

import hashlib
from collections.abc import Collection

from personagen.data.chunk_store import ChunkStore
from personagen.state.goal import ResolvedGoal
from personagen.state.items import PersonaProfile, QAPair


def pair_id(question: str, taken: Collection[str]) -> str:
    """A stable id for a new pair, unique among `taken`."""
    base = "q" + hashlib.sha1(question.strip().lower().encode()).hexdigest()[:10]
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def prompt_vars(persona: PersonaProfile, goal: ResolvedGoal) -> dict[str, object]:
    """Variables every goal prompt can use."""
    return {
        "persona": persona.render(),
        "persona_short": persona.short(),
        "language": persona.language,
        "user_prompts": goal.user_prompts,
    }


def seed_excerpt(store: ChunkStore, pair: QAPair, *, fallback_chars: int) -> tuple[str, str]:
    """The excerpt a pair's question was drawn from, and its source, for regeneration."""
    if pair.seed_doc_id is None:
        return "", ""
    text = store.get_text(pair.seed_doc_id)
    start = pair.seed_start or 0
    end = pair.seed_end if pair.seed_end is not None else start + fallback_chars
    return text[start:end], store.get_ref(pair.seed_doc_id).source


def regrounded(pair: QAPair, store: ChunkStore, doc_ids: Collection[str] = ()) -> QAPair:
    """`pair` with spans for its current answer, after a hook or a reviewer edited it.

    Each sentence of the answer is located in the pair's retrieved contexts, their
    documents, then the run's other documents (`doc_ids`: an editor may quote any of them);
    a sentence that is not verbatim is checked as a claim, and the source sentence that
    supports it becomes its span (`evaluators.support`). Claims no source supports are listed
    in `unmatched_quotes`. Spans of the answer before the edit are dropped: they supported
    another text.
    """
    from personagen.evaluators.support import ground_answer

    if not pair.answer.strip():
        return pair.model_copy(update={"spans": [], "unmatched_quotes": []})
    spans, unmatched = ground_answer(pair.answer, pair.contexts, store.get_text, also_in=doc_ids)
    return pair.model_copy(update={"spans": spans, "unmatched_quotes": unmatched})


def new_questions(pairs: Collection[QAPair], iteration: int) -> list[QAPair]:
    """The questions of this pass nobody has seen yet: first generation, or replacements.

    A pair re-answered with its question unchanged is not among them (hooks and the reviewer
    saw its question in an earlier pass).
    """
    return [
        p
        for p in pairs
        if p.status == "pending"
        and p.iteration == iteration
        and (not p.history or p.history[-1].get("question") != p.question)
    ]


def live_questions(pairs: Collection[QAPair]) -> list[str]:
    """The run's questions still in play (the relevance judge's contrast set)."""
    return [p.question for p in pairs if p.status != "rejected"]
