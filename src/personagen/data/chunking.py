"""Splitting document text into chunks whose offsets point exactly back into the text.

Answers are grounded in spans of the source text, so every chunk must satisfy
`text[chunk.start:chunk.end] == chunk.text`. langchain's `RecursiveCharacterTextSplitter`
returns strings only; its `add_start_index` finds them with `text.find`, which lands on the
wrong copy of a repeated paragraph, and even a forward search cannot place two identical
consecutive chunks (the splitter emits such pairs both at one place and at adjacent copies).
So the recursive algorithm runs here on offsets instead: the same separators (langchain's
lists), the same merge and overlap rule, with exact positions by construction.

Three splitters:

- `recursive`: paragraphs, then lines, then words; chunks overlap by up to `chunk_overlap`.
- `markdown`: split at headings first (the heading line stays in its section's first chunk),
  then each section recursively; chunks never span two sections.
- `sentence`: whole sentences packed up to `chunk_size`, overlapping by whole sentences.

No chunk is longer than `chunk_size` characters; text without any break point (a long URL,
base64, CJK text without spaces) is cut into windows of `chunk_size`.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence
from typing import Literal, get_args

from langchain_text_splitters import Language, RecursiveCharacterTextSplitter

from personagen.data._markdown import find_headings
from personagen.state.documents import Chunk

__all__ = ["SPLITTERS", "Splitter", "chunk_text", "chunks_from_spans", "validate_chunking"]

Splitter = Literal["recursive", "markdown", "sentence"]
"""How text is split: by paragraphs/lines/words, by Markdown sections, or by sentences."""
SPLITTERS: tuple[str, ...] = get_args(Splitter)

# langchain's default separators, without its last one (""): splitting character by
# character is slow on long runs without whitespace, which are cut into windows instead.
_PLAIN_SEPARATORS = [re.compile(re.escape(separator)) for separator in ("\n\n", "\n", " ")]
_MARKDOWN_SEPARATORS = [
    re.compile(separator)
    for separator in RecursiveCharacterTextSplitter.get_separators_for_language(Language.MARKDOWN)
    if separator
]

# A sentence ends at ., !, ? or an ellipsis (with closing quotes or brackets) before
# whitespace, at CJK full stops, or at a blank line.
_SENTENCE_END_RE = re.compile(
    r"[.!?\u2026]+[\"'\u201d\u2019\u00bb)\]]*(?=\s)"
    r"|[\u3002\uff01\uff1f]+[\"'\u201d\u2019\u300d\u300f)]*"
    r"|\n[ \t]*\n"
)
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st vs etc eg ie cf al fig figs no nos vol vols pp ch sec approx "
    "inc ltd co corp dept est jan feb mar apr jun jul aug sep sept oct nov dec mt ft gen gov "
    "rev lt col sgt capt".split()
)
_WORD_BEFORE_RE = re.compile(r"([A-Za-z][A-Za-z.]*)$")


def validate_chunking(chunk_size: int, chunk_overlap: int, splitter: str) -> None:
    """Check chunking parameters.

    Raises:
        ValueError: Naming the parameter that is out of range.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size <= 0:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    if (
        isinstance(chunk_overlap, bool)
        or not isinstance(chunk_overlap, int)
        or not 0 <= chunk_overlap < chunk_size
    ):
        raise ValueError(
            f"chunk_overlap must be an integer with 0 <= chunk_overlap < chunk_size "
            f"({chunk_size}), got {chunk_overlap!r}"
        )
    if splitter not in SPLITTERS:
        raise ValueError(
            f"splitter must be one of {', '.join(map(repr, SPLITTERS))}, got {splitter!r}"
        )


def chunk_text(
    doc_id: str,
    text: str,
    *,
    chunk_size: int = 1000,
    chunk_overlap: int = 150,
    splitter: Splitter = "recursive",
) -> list[Chunk]:
    """Split a document's text into chunks with exact character offsets.

    Args:
        doc_id: The document id; its first 12 characters prefix the chunk ids.
        text: The document text (as stored; offsets refer to it).
        chunk_size: Maximum chunk length in characters.
        chunk_overlap: Characters (at most) shared by consecutive chunks.
        splitter: `recursive`, `markdown` or `sentence`.

    Returns:
        Chunks in text order; blank text gives none. Each chunk's text is stripped of
        surrounding whitespace and equals `text[chunk.start:chunk.end]`.

    Raises:
        ValueError: A parameter is out of range.
    """
    validate_chunking(chunk_size, chunk_overlap, splitter)
    if splitter == "markdown":
        spans = [
            span
            for start, end in _markdown_sections(text)
            for span in _recursive_spans(
                text, start, end, chunk_size, chunk_overlap, _MARKDOWN_SEPARATORS
            )
        ]
    elif splitter == "sentence":
        spans = _sentence_spans(text, chunk_size, chunk_overlap)
    else:
        spans = _recursive_spans(text, 0, len(text), chunk_size, chunk_overlap, _PLAIN_SEPARATORS)
    return chunks_from_spans(doc_id, text, spans)


def chunks_from_spans(doc_id: str, text: str, spans: Sequence[Sequence[int]]) -> list[Chunk]:
    """Build `Chunk`s from `(start, end)` offsets into `text` (used to rebuild cached ones).

    Raises:
        ValueError: A span is outside the text or empty.
    """
    prefix = doc_id[:12]
    chunks = []
    for index, (start, end) in enumerate(spans):
        if not 0 <= start < end <= len(text):
            raise ValueError(f"span {start}-{end} is outside the text ({len(text)} characters)")
        chunks.append(
            Chunk(
                id=f"{prefix}:{start}-{end}",
                doc_id=doc_id,
                index=index,
                start=start,
                end=end,
                text=text[start:end],
            )
        )
    return chunks


def _strip_span(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _windows(text: str, start: int, end: int, size: int, overlap: int) -> list[tuple[int, int]]:
    """Cut `text[start:end]` into windows of at most `size` characters, overlapping."""
    spans = []
    step = size - overlap
    position = start
    while position < end:
        window = _strip_span(text, position, min(position + size, end))
        if window[0] < window[1]:
            spans.append(window)
        if position + size >= end:
            break
        position += step
    return spans


def _recursive_spans(
    text: str,
    start: int,
    end: int,
    size: int,
    overlap: int,
    separators: Sequence[re.Pattern[str]],
) -> list[tuple[int, int]]:
    """Chunk offsets for `text[start:end]`, by langchain's recursive character algorithm.

    Same separators, same rule for merging pieces and carrying overlap as
    `RecursiveCharacterTextSplitter(keep_separator=True, strip_whitespace=True)`, but on
    offsets, so chunks are located exactly even when the text repeats itself.
    """
    raw = _split_recursively(text, start, end, size, overlap, separators)
    spans: list[tuple[int, int]] = []
    for raw_start, raw_end in raw:
        piece_start, piece_end = _strip_span(text, raw_start, raw_end)
        if piece_end - piece_start > size:
            new_spans = _windows(text, piece_start, piece_end, size, overlap)
        else:
            new_spans = [(piece_start, piece_end)] if piece_start < piece_end else []
        for span in new_spans:
            # A chunk that is a prefix of the next one adds nothing. The merge rule makes
            # such pairs when a short chunk is carried over whole as the next one's overlap.
            while spans and spans[-1][0] == span[0] and spans[-1][1] <= span[1]:
                spans.pop()
            spans.append(span)
    return spans


def _split_recursively(
    text: str,
    start: int,
    end: int,
    size: int,
    overlap: int,
    separators: Sequence[re.Pattern[str]],
) -> list[tuple[int, int]]:
    # The first separator present in the text splits it; pieces that are still too long are
    # split with the separators after it.
    chosen: re.Pattern[str] | None = None
    rest: Sequence[re.Pattern[str]] = ()
    for position, separator in enumerate(separators):
        if separator.search(text, start, end):
            chosen, rest = separator, separators[position + 1 :]
            break
    if chosen is None:
        return [(start, end)]
    # Each separator stays at the start of the piece that follows it.
    cuts = [start, *(match.start() for match in chosen.finditer(text, start, end)), end]
    pieces = [(left, right) for left, right in zip(cuts, cuts[1:], strict=False) if left < right]

    chunks: list[tuple[int, int]] = []
    fitting: list[tuple[int, int]] = []
    for piece in pieces:
        if piece[1] - piece[0] < size:
            fitting.append(piece)
            continue
        if fitting:
            chunks.extend(_merge(fitting, size, overlap))
            fitting = []
        if rest:
            chunks.extend(_split_recursively(text, piece[0], piece[1], size, overlap, rest))
        else:
            chunks.append(piece)
    if fitting:
        chunks.extend(_merge(fitting, size, overlap))
    return chunks


def _merge(pieces: list[tuple[int, int]], size: int, overlap: int) -> list[tuple[int, int]]:
    """Join adjacent pieces into chunks of at most `size`, carrying up to `overlap` over."""
    chunks: list[tuple[int, int]] = []
    current: deque[tuple[int, int]] = deque()
    total = 0
    for piece in pieces:
        length = piece[1] - piece[0]
        if current and total + length > size:
            chunks.append((current[0][0], current[-1][1]))
            while total > overlap or (total + length > size and total > 0):
                first = current.popleft()
                total -= first[1] - first[0]
        current.append(piece)
        total += length
    if current:
        chunks.append((current[0][0], current[-1][1]))
    return chunks


def _markdown_sections(text: str) -> list[tuple[int, int]]:
    """Sections of a Markdown text: from each heading to the next.

    A heading directly followed by another heading (a title over a subtitle) joins the next
    section, so no chunk holds nothing but a heading.
    """
    headings = find_headings(text)
    starts = [heading.start for heading in headings]
    body_starts = {heading.start: heading.body_start for heading in headings}
    if not starts or starts[0] != 0:
        starts.insert(0, 0)
    bounds = [*starts, len(text)]
    sections: list[tuple[int, int]] = []
    pending: int | None = None
    for index, section_start in enumerate(starts):
        section_end = bounds[index + 1]
        body_start = body_starts.get(section_start, section_start)
        start = section_start if pending is None else pending
        if section_start in body_starts and not text[body_start:section_end].strip():
            if index + 1 < len(starts):
                pending = start
                continue
        pending = None
        if text[start:section_end].strip():
            sections.append((start, section_end))
    return sections


def _is_sentence_break(text: str, match: re.Match[str], end: int) -> bool:
    if match.group().startswith("\n"):
        return True
    stop = match.group()
    if stop.startswith("."):
        if stop == "." or stop.rstrip("\"'\u201d\u2019\u00bb)]") == ".":
            word = _WORD_BEFORE_RE.search(text, max(0, match.start() - 20), match.start())
            if word:
                token = word.group(1).lower().replace(".", "")
                # Initials ("J. Smith") and known abbreviations do not end sentences.
                if len(token) == 1 or token in _ABBREVIATIONS:
                    return False
        # A lower-case continuation means the period was not a sentence end ("e.g. this").
        after = match.end()
        while after < end and text[after].isspace():
            after += 1
        if after < end and text[after].islower():
            return False
    return True


def _sentences(text: str, start: int, end: int) -> list[tuple[int, int]]:
    spans = []
    position = start
    for match in _SENTENCE_END_RE.finditer(text, start, end):
        if not _is_sentence_break(text, match, end):
            continue
        span = _strip_span(text, position, match.end())
        if span[0] < span[1]:
            spans.append(span)
        position = match.end()
    span = _strip_span(text, position, end)
    if span[0] < span[1]:
        spans.append(span)
    return spans


def _sentence_spans(text: str, size: int, overlap: int) -> list[tuple[int, int]]:
    """Pack whole sentences into chunks; the overlap is made of whole trailing sentences."""
    sentences = _sentences(text, 0, len(text))
    spans: list[tuple[int, int]] = []
    count = len(sentences)
    first = 0
    while first < count:
        start, end = sentences[first]
        if end - start > size:
            # A sentence longer than a chunk is split like any other text, on its own.
            spans.extend(_recursive_spans(text, start, end, size, overlap, _PLAIN_SEPARATORS))
            first += 1
            continue
        last = first
        while last + 1 < count and sentences[last + 1][1] - start <= size:
            last += 1
        spans.append((start, sentences[last][1]))
        if last + 1 >= count:
            break
        # Step back over trailing sentences while they fit in the overlap and still leave
        # room for the next new sentence; always move past `first` to make progress.
        chunk_end = sentences[last][1]
        next_end = sentences[last + 1][1]
        following = last + 1
        while (
            following - 1 > first
            and chunk_end - sentences[following - 1][0] <= overlap
            and next_end - sentences[following - 1][0] <= size
        ):
            following -= 1
        first = following
    return spans
