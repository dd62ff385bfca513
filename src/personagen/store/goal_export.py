"""Bundle files of the summary and rewrite goals, and their part of metadata.json.

summary:  summary.md (accepted) or summary_rejected.md (with its reasons on top),
          summary_claims.jsonl (every claim with the source spans it rests on),
          summary.json (scores, reasons, need coverage, notes with their spans, history).
rewrite:  rewrites.jsonl (accepted and not-applicable units, with source text and claims),
          rewrites_rejected.jsonl (units given up on, with their reasons),
          rewritten.md (the accepted rewrites in document order; other units are noted).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from personagen.evaluators.checks import count_words
from personagen.state.documents import DocumentRef, Span
from personagen.state.outputs import Claim, RewriteItem, SummaryDraft, SummaryNote
from personagen.store.bundle import write_json, write_jsonl

TextOf = Callable[[str], str]


def _span_row(span: Span, sources: Mapping[str, str]) -> dict[str, Any]:
    return {
        "doc_id": span.doc_id,
        "source": sources.get(span.doc_id),
        "start": span.start,
        "end": span.end,
        "text": span.text,
    }


def _claim_row(claim: Claim, sources: Mapping[str, str]) -> dict[str, Any]:
    return {
        "claim": claim.text,
        "supported": claim.supported,
        "quote": claim.quote,
        "part": claim.part,
        "spans": [_span_row(s, sources) for s in claim.spans],
    }


# --- summary ------------------------------------------------------------------------------


def summary_markdown(summary: SummaryDraft) -> str:
    """summary.md, or for a rejected summary the text under a note saying why."""
    text = summary.markdown()
    if summary.status == "accepted":
        return text
    reasons = "\n".join(f"> - {r}" for r in summary.feedback) or "> - (no reason recorded)"
    return f"> **Not accepted** ({summary.status}). Why:\n{reasons}\n\n{text}"


def write_summary(
    directory: Path,
    summary: SummaryDraft | None,
    notes: list[SummaryNote],
    sources: Mapping[str, str],
) -> dict[str, str]:
    """Write the summary goal's files; return name -> path."""
    directory.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    summary = summary or SummaryDraft(status="rejected", feedback=["no summary was written"])
    name = "summary.md" if summary.status == "accepted" else "summary_rejected.md"
    (directory / name).write_text(summary_markdown(summary), encoding="utf-8")
    files[name] = str(directory / name)
    headings = [s.heading for s in summary.sections]
    rows = (
        {
            "id": f"c{index + 1}",
            "section": headings[c.part] if c.part is not None and c.part < len(headings) else None,
            **_claim_row(c, sources),
        }
        for index, c in enumerate(summary.claims)
    )
    write_jsonl(directory / "summary_claims.jsonl", rows)
    files["summary_claims.jsonl"] = str(directory / "summary_claims.jsonl")
    record = {
        "status": summary.status,
        "title": summary.title,
        "sections": [s.model_dump() for s in summary.sections],
        "scores": summary.scores,
        "judge_reasons": summary.reasons,
        "reasons": summary.feedback,
        "violations": [v.model_dump(mode="json") for v in summary.violations],
        "needs": [n.model_dump() for n in summary.needs],
        "attempts": summary.attempts,
        "iteration": summary.iteration,
        "history": summary.history,
        "notes": [
            {
                "id": n.id,
                "point": n.point,
                "quote": n.quote,
                "group": n.group,
                "level": n.level,
                "used": n.used,
                "spans": [_span_row(s, sources) for s in n.spans],
            }
            for n in notes
        ],
    }
    write_json(directory / "summary.json", record)
    files["summary.json"] = str(directory / "summary.json")
    return files


def summary_metadata(summary: SummaryDraft | None, notes: list[SummaryNote]) -> dict[str, Any]:
    """The summary goal's counts for metadata.json."""
    if summary is None:
        return {"summary": {"status": "missing"}}
    return {
        "summary": {
            "status": summary.status,
            "words": count_words(summary.markdown()),
            "sections": len(summary.sections),
            "claims": len(summary.claims),
            "supported_claims": sum(c.supported for c in summary.claims),
            "notes": len(notes),
            "notes_used": sum(n.used for n in notes),
            "notes_not_in_data": sum(not n.grounded for n in notes),
            "needs_covered": [
                n.need for n in summary.needs if n.in_data and (n.score or 0) >= 0.75
            ],
            "needs_not_covered": [
                n.need for n in summary.needs if n.in_data and (n.score or 0) < 0.75
            ],
            "needs_not_in_data": [n.need for n in summary.needs if n.in_data is False],
            "reasons": summary.feedback if summary.status != "accepted" else [],
        }
    }


# --- rewrite ------------------------------------------------------------------------------


def rewrite_row(item: RewriteItem, sources: Mapping[str, str], text_of: TextOf) -> dict[str, Any]:
    """One line of rewrites.jsonl / rewrites_rejected.jsonl."""
    return {
        "id": item.id,
        "source": item.source,
        "doc_id": item.doc_id,
        "start": item.start,
        "end": item.end,
        "unit_index": item.unit_index,
        "status": item.status,
        "applicable": item.applicable,
        "source_text": text_of(item.doc_id)[item.start : item.end],
        "output": item.output,
        "parts": item.parts,
        "claims": [_claim_row(c, sources) for c in item.claims],
        "scores": item.scores,
        "judge_reasons": item.reasons,
        "violations": [v.model_dump(mode="json") for v in item.violations],
        "reasons": item.feedback,
        "attempts": item.attempts,
        "iteration": item.iteration,
        "history": item.history,
    }


def rewritten_markdown(items: list[RewriteItem], documents: list[DocumentRef]) -> str:
    """The accepted rewrites in document order; the other units are noted, not dropped."""
    by_doc: dict[str, list[RewriteItem]] = {}
    for item in sorted(items, key=lambda i: i.unit_index):
        by_doc.setdefault(item.doc_id, []).append(item)
    blocks: list[str] = []
    for document in documents:
        units = by_doc.get(document.id)
        if not units:
            continue
        blocks.append(f"<!-- source: {document.source} -->")
        for item in units:
            if item.status == "accepted":
                blocks.append(item.output)
            elif item.status == "not_applicable":
                blocks.append(f"<!-- {item.id}: the instruction does not apply to this part -->")
            else:
                why = "; ".join(item.feedback) or "no reason recorded"
                blocks.append(f"<!-- {item.id}: {item.status}: {why.replace('--', '- -')} -->")
    return "\n\n".join(blocks).strip() + "\n"


def write_rewrites(
    directory: Path,
    items: Mapping[str, RewriteItem],
    documents: list[DocumentRef],
    text_of: TextOf,
) -> dict[str, str]:
    """Write the rewrite goal's files; return name -> path."""
    directory.mkdir(parents=True, exist_ok=True)
    sources = {d.id: d.source for d in documents}
    ordered = sorted(items.values(), key=lambda i: i.unit_index)
    kept = [i for i in ordered if i.status in ("accepted", "not_applicable")]
    rejected = [i for i in ordered if i.status not in ("accepted", "not_applicable")]
    files: dict[str, str] = {}
    write_jsonl(directory / "rewrites.jsonl", (rewrite_row(i, sources, text_of) for i in kept))
    files["rewrites.jsonl"] = str(directory / "rewrites.jsonl")
    write_jsonl(
        directory / "rewrites_rejected.jsonl",
        (rewrite_row(i, sources, text_of) for i in rejected),
    )
    files["rewrites_rejected.jsonl"] = str(directory / "rewrites_rejected.jsonl")
    (directory / "rewritten.md").write_text(rewritten_markdown(ordered, documents), "utf-8")
    files["rewritten.md"] = str(directory / "rewritten.md")
    return files


def rewrite_metadata(items: Mapping[str, RewriteItem]) -> dict[str, Any]:
    """The rewrite goal's counts for metadata.json."""
    statuses = Counter(i.status for i in items.values())
    return {
        "rewrites": {
            "units": len(items),
            "accepted": statuses["accepted"],
            "rejected": statuses["rejected"],
            "not_applicable": statuses["not_applicable"],
            "rejected_by_reason": dict(
                Counter(
                    r.split(":")[0]
                    for i in items.values()
                    if i.status == "rejected"
                    for r in i.feedback
                )
            ),
        }
    }


# --- both ---------------------------------------------------------------------------------


def write_goal_outputs(
    directory: Path, state: Mapping[str, Any], documents: list[DocumentRef], text_of: TextOf
) -> tuple[dict[str, str], dict[str, Any]]:
    """Write the files of the run's goal loop; return (name -> path, metadata fields).

    The Q/A loop's files are written by `personagen.store.bundle`; for it this does nothing.
    """
    loop = state["goal"].loop
    if loop == "summary":
        notes = list(state.get("summary_notes") or [])
        summary = state.get("summary")
        sources = {d.id: d.source for d in documents}
        return (
            write_summary(directory, summary, notes, sources),
            summary_metadata(summary, notes),
        )
    if loop == "rewrite":
        items = dict(state.get("rewrites") or {})
        return write_rewrites(directory, items, documents, text_of), rewrite_metadata(items)
    return {}, {}
