"""Finding Markdown headings, for document titles and for header-aware chunking.

A small line scanner rather than a Markdown parser: it only has to know where headings start,
and it must report exact character offsets into the text it was given. It ignores `#` lines
inside fenced code blocks and YAML front matter, which a naive regex would take for headings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_FENCE_RE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_ATX_RE = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT_RE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
# Lines that cannot be the text of a setext heading (list items, tables, quotes, fences).
_NOT_SETEXT_TEXT_RE = re.compile(r"^\s*(?:[-*+>|]|\d+[.)]\s|`{3,}|~{3,})")


@dataclass(frozen=True)
class Heading:
    """A Markdown heading found in a text."""

    start: int
    """Offset of the first character of the heading's first line."""
    body_start: int
    """Offset just past the heading's last line (its underline, for setext headings)."""
    level: int
    """1 for `#` and `===`, 2 for `##` and `---`, and so on."""
    title: str
    """The heading text, stripped."""


def _front_matter_end(lines: list[str]) -> int:
    """Number of lines taken by a leading YAML front matter block (0 when there is none)."""
    if not lines or lines[0].rstrip() != "---":
        return 0
    for number in range(1, len(lines)):
        if lines[number].rstrip() in ("---", "..."):
            return number + 1
    return 0


def find_headings(text: str) -> list[Heading]:
    """Find the ATX (`# Title`) and setext (`Title` over `===`) headings of a Markdown text.

    Args:
        text: Markdown text with LF newlines.

    Returns:
        The headings in order of appearance, with exact offsets into `text`.
    """
    lines = text.split("\n")
    offsets = []
    position = 0
    for line in lines:
        offsets.append(position)
        position += len(line) + 1

    headings: list[Heading] = []
    fence: str | None = None
    first = _front_matter_end(lines)
    for number in range(first, len(lines)):
        line = lines[number]
        fence_match = _FENCE_RE.match(line)
        if fence is not None:
            # A fence closes on a line of the same character, at least as long, and nothing else.
            if (
                fence_match
                and fence_match.group(1)[0] == fence[0]
                and len(fence_match.group(1)) >= len(fence)
                and not line.strip().strip(fence[0])
            ):
                fence = None
            continue
        if fence_match:
            fence = fence_match.group(1)
            continue
        atx = _ATX_RE.match(line) if "#" in line[:4] else None
        if atx:
            headings.append(
                Heading(
                    start=offsets[number],
                    body_start=min(offsets[number] + len(line) + 1, len(text)),
                    level=len(atx.group(1)),
                    title=(atx.group(2) or "").strip(),
                )
            )
            continue
        setext = _SETEXT_RE.match(line) if number > first else None
        if setext and _is_setext_text(lines, number - 1, first):
            if headings and headings[-1].start == offsets[number - 1]:
                continue
            headings.append(
                Heading(
                    start=offsets[number - 1],
                    body_start=min(offsets[number] + len(line) + 1, len(text)),
                    level=1 if setext.group(1)[0] == "=" else 2,
                    title=lines[number - 1].strip(),
                )
            )
    return headings


def _is_setext_text(lines: list[str], number: int, first: int) -> bool:
    """True when `lines[number]` can be the text of a setext heading underlined below it.

    Only a one-line paragraph qualifies here (CommonMark allows several lines), which keeps
    `---` rules after longer paragraphs from being read as headings.
    """
    text_line = lines[number]
    if not text_line.strip() or _NOT_SETEXT_TEXT_RE.match(text_line):
        return False
    if _FENCE_RE.match(text_line) or _ATX_RE.match(text_line):
        return False
    return number == first or not lines[number - 1].strip()


def markdown_title(text: str) -> str | None:
    """The text of the first level-1 heading of a Markdown text, or None."""
    for heading in find_headings(text):
        if heading.level == 1 and heading.title:
            return heading.title
    return None
