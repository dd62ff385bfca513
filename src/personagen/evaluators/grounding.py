"""Span grounding: tie an answer's quotes to exact character spans of the source documents.

Models are asked to copy supporting sentences word for word; small models paraphrase a
little, change whitespace or drop punctuation. Each quote is looked up exactly, then
whitespace-insensitively, then by fuzzy alignment, first in the retrieved chunks and then in
their whole documents; a quote found nowhere is reported, never turned into a made-up span.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from rapidfuzz import fuzz

from personagen.state.documents import Span
from personagen.state.items import RetrievedContext

MIN_QUOTE_CHARS = 12
FUZZY_MIN_SCORE = 88.0


def _whitespace_pattern(quote: str) -> re.Pattern[str]:
    tokens = [re.escape(t) for t in quote.split()]
    return re.compile(r"\s+".join(tokens))


def find_quote(quote: str, text: str) -> tuple[int, int] | None:
    """The (start, end) of `quote` in `text`: exact, whitespace-tolerant, or fuzzy."""
    quote = quote.strip().strip('"“”')
    if len(quote) < MIN_QUOTE_CHARS:
        return None
    index = text.find(quote)
    if index >= 0:
        return index, index + len(quote)
    match = _whitespace_pattern(quote).search(text)
    if match:
        return match.start(), match.end()
    lowered = text.lower().find(quote.lower())
    if lowered >= 0:
        return lowered, lowered + len(quote)
    if len(text) > 200_000:  # fuzzy alignment over a whole large document is too slow
        return None
    alignment = fuzz.partial_ratio_alignment(quote, text, score_cutoff=FUZZY_MIN_SCORE)
    if alignment is None:
        return None
    return _snap_to_words(quote, text, alignment.dest_start, alignment.dest_end)


_WORD = re.compile(r"\S+")


def _snap_to_words(quote: str, text: str, start: int, end: int) -> tuple[int, int]:
    """The word-aligned span near [start, end) that best matches `quote`.

    Fuzzy alignment returns a window as long as the quote, which cuts words and takes in
    neighbouring text when the quote has extra or missing words ("... a purchase. (checked)"
    aligned onto "...a purchase. A surve"). The span is moved to the word boundaries within a
    quarter of its length of each end that match the quote best.
    """
    reach = max(8, (end - start) // 4)
    lo, hi = max(0, start - reach), min(len(text), end + reach)
    words = [(m.start(), m.end()) for m in _WORD.finditer(text, lo, hi)]
    starts = [a for a, _ in words if abs(a - start) <= reach]
    ends = [b for _, b in words if abs(b - end) <= reach]
    best, best_score = (start, end), -1.0
    for a in starts:
        for b in ends:
            if b > a:
                # A span that ends a sentence wins near-ties ("... purchase." over
                # "... purchase. A" for a quote with an extra word at its end).
                score = fuzz.ratio(quote, text[a:b]) + (2.0 if text[b - 1] in ".!?" else 0.0)
                if score > best_score:
                    best, best_score = (a, b), score
    return best


def ground_quotes(
    quotes: Iterable[str],
    contexts: list[RetrievedContext],
    document_text: Callable[[str], str],
    also_in: Iterable[str] = (),
) -> tuple[list[Span], list[str]]:
    """Locate each quote in the contexts, then their documents, then the `also_in` documents.

    Returns the spans found and the quotes found nowhere.
    """
    spans: list[Span] = []
    unmatched: list[str] = []
    for quote in quotes:
        quote = quote.strip()
        if not quote:
            continue
        span = None
        for context in contexts:
            found = find_quote(quote, context.text)
            if found:
                start, end = context.start + found[0], context.start + found[1]
                span = Span(
                    doc_id=context.doc_id,
                    start=start,
                    end=end,
                    text=context.text[found[0] : found[1]],
                )
                break
        if span is None:
            for doc_id in dict.fromkeys([*(c.doc_id for c in contexts), *also_in]):
                text = document_text(doc_id)
                found = find_quote(quote, text)
                if found:
                    span = Span(
                        doc_id=doc_id, start=found[0], end=found[1], text=text[found[0] : found[1]]
                    )
                    break
        if span is None:
            unmatched.append(quote)
        elif all((s.doc_id, s.start, s.end) != (span.doc_id, span.start, span.end) for s in spans):
            spans.append(span)
    return spans, unmatched


def is_extractive(answer: str, span_texts: list[str]) -> bool:
    """Whether the answer consists only of the given source spans (whitespace aside)."""
    remaining = " ".join(answer.split())
    if not remaining or not span_texts:
        return False
    for text in sorted({" ".join(t.split()) for t in span_texts}, key=len, reverse=True):
        remaining = remaining.replace(text, " ")
    return not remaining.strip(" .;,\n")
