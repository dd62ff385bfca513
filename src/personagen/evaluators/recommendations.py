"""Recommendations to improve a run's inputs, each with the evidence behind it."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from personagen.llm._text import content_words
from personagen.state.documents import Chunk
from personagen.state.items import PersonaProfile, QAPair
from personagen.state.metadata import IterationReport, JudgeSelfTest

# "chunks never retrieved" fires when a whole document was never retrieved, or when at least
# this share of all chunks never reached any answer's context.
UNRETRIEVED_SHARE = 0.5
# Words too common in needs and questions to show that a need is covered.
_WEAK = frozenset(
    "able get gets getting keep know like lot make need needs really sure thing things "
    "want wants way well within".split()
)


def _stem(word: str) -> str:
    """A crude stemmer, so 'mortgages' meets 'mortgage', 'taxes' 'tax' and 'paying' 'pay'."""
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        word = word[:-1]
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]
    return word


def _stems(text: str) -> set[str]:
    return {
        _stem(w) for w in content_words(text) if len(w) > 2 and not w.isdigit() and w not in _WEAK
    }


def _unretrieved(
    pairs: Sequence[QAPair],
    chunks: Sequence[Chunk] | None,
    data_refs: Sequence[Mapping[str, Any]] | None,
) -> dict[str, Any] | None:
    """Chunks (or, from data_refs' chunk counts, documents) no pair's contexts ever held."""
    retrieved = {c.chunk_id for p in pairs for c in p.contexts}
    retrieved_docs: dict[str, set[str]] = defaultdict(set)
    for pair in pairs:
        for context in pair.contexts:
            retrieved_docs[context.doc_id].add(context.chunk_id)
    sources = {str(r.get("id")): str(r.get("source", r.get("id"))) for r in data_refs or []}
    if chunks:
        missed = [c for c in chunks if c.id not in retrieved]
        total = len({c.id for c in chunks})
        missed_docs = sorted(
            {c.doc_id for c in missed if not retrieved_docs.get(c.doc_id)}, key=str
        )
        evidence = [f"{c.id} ({sources.get(c.doc_id, c.doc_id[:12])})" for c in missed]
        n_missed = len({c.id for c in missed})
    elif data_refs:
        per_doc = {str(r.get("id")): int(r.get("chunks") or 0) for r in data_refs}
        total = sum(per_doc.values())
        n_missed = sum(max(0, n - len(retrieved_docs.get(d, ()))) for d, n in per_doc.items())
        missed_docs = sorted(d for d, n in per_doc.items() if n and not retrieved_docs.get(d))
        evidence = [
            f"{sources.get(d, d)}: {len(retrieved_docs.get(d, ()))} of {n} chunk(s) retrieved"
            for d, n in per_doc.items()
            if n > len(retrieved_docs.get(d, ()))
        ]
    else:
        return None
    if not total or not n_missed:
        return None
    if not missed_docs and n_missed / total < UNRETRIEVED_SHARE:
        return None
    documents = (
        f" ({len(missed_docs)} document(s) never used: "
        + ", ".join(sources.get(d, d[:12]) for d in missed_docs[:5])
        + ("..." if len(missed_docs) > 5 else "")
        + ")"
        if missed_docs
        else ""
    )
    return {
        "kind": "unused_data",
        "message": f"{n_missed} of {total} chunk(s) were never retrieved for any question"
        f"{documents}: ask more questions (goal.params.num_questions), add custom_questions "
        "about them, or drop data this persona does not need",
        "evidence": evidence[:20],
    }


def _uncovered_needs(persona: PersonaProfile, pairs: Sequence[QAPair]) -> dict[str, Any] | None:
    """Persona goals, pain points and interests no accepted question or answer touches."""
    accepted = [p for p in pairs if p.status == "accepted"]
    if not accepted:
        return None  # nothing was accepted: the baseline recommendation says why
    covered: set[str] = set()
    for pair in accepted:
        covered |= _stems(pair.question) | _stems(pair.answer)
    needs = [*persona.goals, *persona.pain_points, *persona.interests]
    uncovered = [n for n in needs if _stems(n) and not _stems(n) & covered]
    if not uncovered:
        return None
    return {
        "kind": "uncovered_needs",
        "message": f"{len(uncovered)} of {len(needs)} persona need(s) share no word with any "
        "accepted question or answer: add data that covers them, add custom_questions about "
        "them, or drop them from the persona",
        "evidence": uncovered[:20],
    }


def recommend(
    *,
    persona: PersonaProfile,
    pairs: list[QAPair],
    reports: list[IterationReport],
    baseline: dict[str, float],
    max_iterations: int,
    model_name: str,
    chunks: Sequence[Chunk] | None = None,
    data_refs: Sequence[Mapping[str, Any]] | None = None,
    selftest: JudgeSelfTest | None = None,
) -> list[dict[str, Any]]:
    """Derive recommendations from what the run saw; each names its evidence.

    Args:
        persona: the composed persona.
        pairs: every pair of the run, with its final status.
        reports: one report per tuning-loop iteration.
        baseline: per-metric minimum scores.
        max_iterations: the run's iteration limit.
        model_name: the chat model used.
        chunks: every chunk retrieval could return; gives the exact ids never retrieved.
        data_refs: `data_refs.json` rows (`id`, `source`, `chunks`): names the documents, and
            without `chunks` gives per-document counts of chunks never retrieved.
        selftest: the judges' self-test, if it ran.
    """
    out: list[dict[str, Any]] = []
    failed = selftest.failed() if selftest is not None else []
    if failed:
        unverified = [p for p in pairs if p.status == "unverified"]
        out.append(
            {
                "kind": "stronger_judge",
                "message": f"{len(failed)} judge metric(s) of {model_name} could not tell right "
                f"answers from wrong ones on this data ({', '.join(m.metric for m in failed)}); "
                f"{len(unverified)} pair(s) they would accept are in unverified.jsonl, not "
                "accepted. Set llm.judge to a stronger model (any OpenAI-compatible endpoint), "
                "or drop those metrics from goal.baseline",
                "evidence": [f"{m.metric}: {m.reason}" for m in failed],
            }
        )
    unanswerable = [p for p in pairs if p.status == "unanswerable" or p.answerable is False]
    if unanswerable:
        out.append(
            {
                "kind": "add_data",
                "message": f"{len(unanswerable)} question(s) could not be answered from the data: "
                "add documents covering them, or drop them from custom_questions",
                "evidence": [p.question for p in unanswerable][:20],
            }
        )
    missing = [
        name
        for name, value in (
            ("role", persona.role),
            ("expertise", persona.expertise),
            ("goals", persona.goals),
            ("pain_points", persona.pain_points),
        )
        if not value
    ]
    if persona.composed_by == "llm" or len(missing) >= 2:
        out.append(
            {
                "kind": "persona_detail",
                "message": "the persona is vague; add "
                + ", ".join(missing or ["goals", "pain_points"])
                + " so questions and answers can be tailored",
                "evidence": [
                    f"composed_by={persona.composed_by}",
                    f"missing: {', '.join(missing)}",
                ],
            }
        )
    rejected = [p for p in pairs if p.status == "rejected"]
    rules = Counter(v.rule for p in rejected for v in p.violations)
    for rule, count in rules.most_common():
        if rejected and count / len(pairs) >= 0.3:
            out.append(
                {
                    "kind": "constraint",
                    "message": f"constraint {rule!r} rejected {count} of {len(pairs)} items: "
                    "check that it says what you mean, or relax it",
                    "evidence": [
                        p.id for p in rejected if any(v.rule == rule for v in p.violations)
                    ][:20],
                }
            )
    if reports and not reports[-1].baseline_met:
        out.append(
            {
                "kind": "baseline",
                "message": f"the baseline was not reached in {len(reports)} of {max_iterations} "
                f"iteration(s) with {model_name}: use a stronger model, raise "
                "run.max_iterations, or lower the baseline",
                "evidence": reports[-1].shortfalls + [f"baseline: {baseline}"],
            }
        )
    for extra in (_unretrieved(pairs, chunks, data_refs), _uncovered_needs(persona, pairs)):
        if extra is not None:
            out.append(extra)
    return out
