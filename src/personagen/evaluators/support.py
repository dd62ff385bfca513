"""Claim-level grounding: which source sentences support each statement of an answer.

A verbatim answer is grounded by locating its quotes (`grounding.ground_quotes`). A
paraphrase has no verbatim span, so it is checked claim by claim: each sentence of the
answer is a claim, and a claim is supported by a source sentence (or two adjacent ones)
when

- every number in the claim is in the source ("two spaces" is not supported by "4 spaces"),
- every code-like token (identifier, path, call) is in the source, verbatim,
- the claim is negated exactly when the source is ("is required" vs "is not required"),
- most of the claim's content words are in the source (stems, so "indentation level" and
  "each level of indentation" match).

The supporting sentences become the pair's spans, so a correct paraphrase can be accepted
with the text it rests on, and an unsupported statement cannot. A short answer is one
claim. A claim with fewer than three content words and no number or code token ("Yes.",
"Ask the lender.") cannot be checked and counts as unsupported: an answer must say
something the sources can confirm.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from personagen.evaluators.lexical import content_stems, key_tokens, negated, normalized, numbers
from personagen.llm._text import sentences
from personagen.state.documents import Span
from personagen.state.items import RetrievedContext

__all__ = ["ClaimCheck", "SourceSentence", "check_claims", "ground_answer", "source_sentences"]

MIN_RECALL = 0.5
"""Share of a claim's content stems its source must contain (all of them for short claims).

Half: paraphrases change many words, while what a wrong answer changes (a number, a code
token, a negation) is checked on its own (labelled set: 18 of 36 correct paraphrases
supported at 0.5, 14 at 0.6; 3 of 18 contradictions either way)."""
SHORT_CLAIM = 3
MIN_STEMS = 3
"""A claim with fewer content words (and no number or code token) cannot be checked."""
NEAREST_RECALL = 0.25
"""A source sharing this much of a claim's content is where an unsupported claim points."""


@dataclass(frozen=True)
class SourceSentence:
    """A sentence of a source document, with its absolute character offsets."""

    doc_id: str
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class ClaimCheck:
    """One claim of an answer and the source that supports it (or why none does)."""

    claim: str
    supported: bool
    source: SourceSentence | None
    why: str
    nearest: SourceSentence | None = None
    """The source sharing most of the claim's content, supported or not (where it points)."""

    def span(self) -> Span | None:
        """The supporting source as a span, if the claim is supported."""
        if not self.supported or self.source is None:
            return None
        s = self.source
        return Span(doc_id=s.doc_id, start=s.start, end=s.end, text=s.text)


def sentences_with_offsets(doc_id: str, text: str, base: int) -> list[SourceSentence]:
    """The sentences of `text` (found at `base` in document `doc_id`), with their offsets."""
    out: list[SourceSentence] = []
    cursor = 0
    for sentence in sentences(text):
        index = text.find(sentence, cursor)
        if index < 0:
            continue
        cursor = index + len(sentence)
        out.append(SourceSentence(doc_id, base + index, base + cursor, sentence))
    return out


def source_sentences(
    contexts: Sequence[RetrievedContext],
    document_text: Callable[[str], str] | None = None,
    also_in: Iterable[str] = (),
) -> list[SourceSentence]:
    """The sentences of the contexts, then of the `also_in` documents, in that order.

    Adjacent sentences are also offered joined (a claim may merge two source sentences).
    """
    out: list[SourceSentence] = []
    for context in contexts:
        out.extend(sentences_with_offsets(context.doc_id, context.text, context.start))
    if document_text is not None:
        seen = {c.doc_id for c in contexts}
        for doc_id in dict.fromkeys(also_in):
            if doc_id not in seen:
                out.extend(sentences_with_offsets(doc_id, document_text(doc_id), 0))
    pairs = []
    for a, b in zip(out, out[1:], strict=False):
        if a.doc_id == b.doc_id and 0 <= b.start - a.end <= 4:
            pairs.append(SourceSentence(a.doc_id, a.start, b.end, f"{a.text} {b.text}"))
    return out + pairs


def _check(claim: str, source: SourceSentence) -> tuple[float, str | None]:
    """(content recall, the conflict that rules this source out or None)."""
    text = source.text
    stems = _stem_set(claim)
    if not stems:
        return 0.0, "nothing checkable"
    recall = len(stems & _stem_set(text)) / len(stems)
    missing_numbers = numbers(claim) - numbers(text)
    if missing_numbers:
        return recall, f"number(s) {', '.join(sorted(missing_numbers))} not in the source"
    flat = normalized(text)
    missing_keys = [k for k in key_tokens(claim) if k not in flat]
    if missing_keys:
        return recall, f"{', '.join(sorted(missing_keys)[:3])} not in the source"
    if negated(claim) != negated(text):
        return recall, "negated in one and not the other"
    return recall, None


@lru_cache(maxsize=50_000)
def _stem_set(text: str) -> frozenset[str]:
    return frozenset(content_stems(text))


def ground_answer(
    answer: str,
    contexts: Sequence[RetrievedContext],
    document_text: Callable[[str], str],
    also_in: Iterable[str] = (),
) -> tuple[list[Span], list[str]]:
    """Spans for an answer someone edited: its verbatim quotes, then each claim's support.

    Each sentence is looked up verbatim first (exact, whitespace-tolerant, fuzzy); a
    sentence found nowhere is checked as a claim against the source sentences, and the
    supporting sentence becomes its span. Returns the spans and the claims left unsupported.
    """
    from personagen.evaluators.grounding import ground_quotes

    spans, unmatched = ground_quotes(sentences(answer), list(contexts), document_text, also_in)
    if not unmatched:
        return spans, []
    candidates = source_sentences(contexts, document_text, also_in)
    left: list[str] = []
    for check in check_claims(" ".join(unmatched), candidates):
        if not check.supported:
            left.append(check.claim)
        # Spans say where a claim rests; whether the source bears it out is the judges'
        # call (grounding, faithfulness), so an unsupported claim still points at its
        # nearest source.
        source = check.source or check.nearest
        if source is not None and all(
            (s.doc_id, s.start, s.end) != (source.doc_id, source.start, source.end) for s in spans
        ):
            spans.append(
                Span(doc_id=source.doc_id, start=source.start, end=source.end, text=source.text)
            )
    return spans, left


def checkable(claim: str) -> bool:
    """Whether a claim says enough to be checked against a source (see `MIN_STEMS`)."""
    return len(_stem_set(claim)) >= MIN_STEMS or bool(numbers(claim) or key_tokens(claim))


def check_claims(answer: str, candidates: Sequence[SourceSentence]) -> list[ClaimCheck]:
    """Check every claim (sentence) of `answer` against the candidate source sentences."""
    claims = [c for c in sentences(answer) if c.strip()] or [answer.strip()]
    checks: list[ClaimCheck] = []
    for claim in claims:
        stems = set(content_stems(claim))
        if not checkable(claim):
            # "Yes." or "Ask the lender.": too little to tell support from coincidence.
            checks.append(ClaimCheck(claim, False, None, "no checkable statement"))
            continue
        needed = 1.0 if len(stems) <= SHORT_CLAIM else MIN_RECALL
        best: tuple[float, SourceSentence] | None = None
        best_conflict: tuple[float, str] | None = None
        nearest: tuple[float, SourceSentence] | None = None
        for source in candidates:
            recall, conflict = _check(claim, source)
            overlap = len(stems & _stem_set(source.text)) / len(stems)
            if overlap >= NEAREST_RECALL and (nearest is None or overlap > nearest[0]):
                nearest = (overlap, source)
            if conflict is None:
                if best is None or recall > best[0]:
                    best = (recall, source)
            elif recall >= needed and (best_conflict is None or recall > best_conflict[0]):
                best_conflict = (recall, conflict)
        near = nearest[1] if nearest else None
        if best is not None and best[0] >= needed - 1e-9:
            checks.append(
                ClaimCheck(
                    claim, True, best[1], f"{best[0]:.0%} of its content in the source", best[1]
                )
            )
        elif best_conflict is not None:
            checks.append(ClaimCheck(claim, False, None, best_conflict[1], near))
        else:
            found = best[0] if best else 0.0
            checks.append(
                ClaimCheck(
                    claim, False, None, f"at most {found:.0%} of its content in a source", near
                )
            )
    return checks
