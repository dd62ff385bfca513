"""Default fake-model responses for the summary and rewrite loops' schemas.

Importing this module registers them in `personagen.llm.fake.DEFAULT_RESPONDERS`. Like the
Q/A defaults they are derived from the prompt and pass the default baselines: notes quote the
excerpt's sentences, summaries are made of the notes' quotes, rewrites list the source's
sentences, the claims judge quotes the source sentence that best overlaps each claim, and
the judges score 4 of 5. Tests override any of them with `FakeChatModel(responders=...)`.
"""

from __future__ import annotations

import re
from typing import Any

from personagen.llm._text import content_words, sentences
from personagen.llm.fake import DEFAULT_RESPONDERS, FakeRequest

_MAX_TEXT = 600


def _limit(request: FakeRequest, pattern: str, default: int) -> int:
    found = re.search(pattern, request.prompt, flags=re.I)
    return min(8, int(found.group(1))) if found else default


def _overlap(a: str, b: str) -> float:
    wa, wb = set(content_words(a)), set(content_words(b))
    return len(wa & wb) / len(wa) if wa else 0.0


def _prose(text: str) -> list[str]:
    """Sentences with at least three content words (headings and fragments left out)."""
    lines = [s.strip() for block in sentences(text) for s in block.splitlines()]
    return [s for s in lines if len(content_words(s)) >= 3 and not s.startswith("#")]


def _notes_in(request: FakeRequest) -> list[tuple[str, str]]:
    pattern = r'<note id="\d+">(.*?)\s*<quote>(.*?)</quote>\s*</note>'
    return [(p.strip(), q.strip()) for p, q in re.findall(pattern, request.prompt, flags=re.S)]


def summary_notes(request: FakeRequest) -> dict[str, Any]:
    """Map: a note per sentence of the excerpt; combine: the first notes as they are."""
    n = _limit(request, r"(?:at most|up to)\s+(\d+)", 6)
    excerpt = request.tag("excerpt")
    if excerpt:
        return {"notes": [{"point": s, "quote": s} for s in _prose(excerpt[0])[:n]]}
    return {"notes": [{"point": p, "quote": q} for p, q in _notes_in(request)[:n]]}


def summary_draft(request: FakeRequest) -> dict[str, Any]:
    """A summary made of the notes' quotes, spread over the sections allowed."""
    sections_allowed = _limit(request, r"at most\s+(\d+)\s+(?:short\s+)?sections", 4)
    quotes = [q for _, q in _notes_in(request)]
    per_section = max(1, -(-len(quotes) // sections_allowed))
    sections: list[dict[str, str]] = []
    for start in range(0, len(quotes), per_section):
        text = ""
        for quote in quotes[start : start + per_section]:
            if len(text) + len(quote) + 1 > _MAX_TEXT:
                break
            text = f"{text} {quote}".strip()
        if text:
            sections.append({"heading": f"Part {len(sections) + 1}", "text": text})
    return {"title": "What matters for you", "sections": sections[:8]}


def claims(request: FakeRequest) -> dict[str, Any]:
    """A claim per sentence of the text, quoting the best-overlapping source sentence."""
    text = (request.tag("text") or [""])[-1]
    source_sentences = [s for block in request.tag("source") for s in sentences(block)]
    out = []
    for sentence in _prose(text)[:8]:
        best, score = "", 0.0
        for candidate in source_sentences:
            overlap = _overlap(sentence, candidate)
            if overlap > score:
                best, score = candidate, overlap
        out.append({"claim": sentence[:300], "quote": best[:400] if score >= 0.5 else ""})
    return {"claims": out}


def need_coverage(request: FakeRequest) -> dict[str, Any]:
    """Every need is in the data and well covered."""
    return {"reason": "The summary covers this need.", "in_data": True, "covered": 4}


def summary_fit(request: FakeRequest) -> dict[str, Any]:
    """The summary suits the person."""
    return {"reason": "Plain words, their concerns first, a length they would read.", "score": 4}


def rewrite(request: FakeRequest) -> dict[str, Any]:
    """The source's sentences as list items; not applicable when it has none."""
    text = (request.tag("text") or [""])[0]
    parts = [f"- {s}"[:_MAX_TEXT] for s in _prose(text)[:8]]
    return {"applicable": bool(parts), "parts": parts}


def criteria_judge(request: FakeRequest) -> dict[str, Any]:
    """Every criterion named in the prompt scores 4 of 5."""
    names = re.findall(r'<criterion name="(.*?)">', request.prompt)
    return {
        "criteria": [{"criterion": n, "reason": "Meets it.", "score": 4} for n in names[:8]],
        "persona_reason": "Suits this person.",
        "persona_fit": 4,
    }


GOAL_RESPONDERS = {
    "SummaryNotesOut": summary_notes,
    "SummaryDraftOut": summary_draft,
    "ClaimsOut": claims,
    "NeedCoverageOut": need_coverage,
    "SummaryFitOut": summary_fit,
    "RewriteOut": rewrite,
    "CriteriaJudgeOut": criteria_judge,
}
"""Default responders by schema name (`personagen.prompts.schemas_goals`)."""

DEFAULT_RESPONDERS.update(GOAL_RESPONDERS)
