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
    return alignment.dest_start, alignment.dest_end


def ground_quotes(
    quotes: Iterable[str],
    contexts: list[RetrievedContext],
    document_text: Callable[[str], str],
) -> tuple[list[Span], list[str]]:
    """Locate each quote in the contexts (then their documents); return spans and misses."""
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
            for doc_id in dict.fromkeys(c.doc_id for c in contexts):
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
