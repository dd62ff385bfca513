"""report.html: sections, inline SVG plots, escaping of every user text; new recommendations."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import pytest
from bs4 import BeautifulSoup

from personagen.evaluators.recommendations import recommend
from personagen.state.documents import Chunk, Span
from personagen.state.items import PersonaProfile, QAPair, RetrievedContext
from personagen.state.metadata import IterationReport
from personagen.state.results import Violation
from personagen.store.report import (
    REPORT_NAME,
    _highlight,
    pair_from_row,
    render_report,
    write_report,
    write_report_from_bundle,
)

EVIL = '<script>alert("x")</script>'
IMG = '<img src="https://tracker.example/p.png" onerror="alert(1)">'
DOC_A = "a" * 64
DOC_B = "b" * 64
TEXT_A = 'Deposits & <fees>: most lenders ask for 5% "down". Solicitors cost <£2,000>.'


def _context(doc: str, start: int, end: int, text: str) -> RetrievedContext:
    return RetrievedContext(
        chunk_id=f"{doc[:12]}:{start}-{end}", doc_id=doc, start=start, end=end, score=1.0, text=text
    )


def _pairs() -> tuple[list[QAPair], list[QAPair]]:
    quote = 'most lenders ask for 5% "down"'
    start = TEXT_A.index(quote)
    accepted = QAPair(
        id="q<1>",
        question=f"How much deposit? {IMG}",
        answer=f"At least 5% & more {EVIL}",
        answerable=True,
        status="accepted",
        contexts=[_context(DOC_A, 0, len(TEXT_A), TEXT_A)],
        spans=[
            Span(doc_id=DOC_A, start=start, end=start + len(quote), text=quote),
            Span(doc_id=DOC_A, start=0, end=8, text="Deposits"),
            Span(doc_id=DOC_B, start=3, end=20, text="<stray & span>"),  # in no context
        ],
        scores={"faithfulness": 0.9, "persona_fit": 0.4},
        reasons={"persona_fit": f"too technical {EVIL}"},
    )
    rejected = QAPair(
        id="q2",
        question="What about <tax>?",
        answer="Ask a <b>solicitor</b>.",
        status="rejected",
        feedback=[f"persona_fit 0.20 is below 0.50: {IMG}"],
        violations=[
            Violation(
                rule="keyword:<x>",
                kind="keyword",
                list="filter_out",
                field="answer",
                reason=f"answer mentions {EVIL}",
            )
        ],
        scores={"faithfulness": 0.3, "persona_fit": 0.2},
    )
    return [accepted], [rejected]


def _metadata() -> dict[str, Any]:
    per_node = {
        "generate_questions": {"runs": 1, "seconds": 0.5, "input_tokens": 500, "output_tokens": 50},
        "answer": {"runs": 4, "seconds": 1.5, "input_tokens": 2000, "output_tokens": 120},
        f"evil{EVIL}": {"runs": 1, "seconds": 0.1, "input_tokens": 10, "output_tokens": 1},
    }
    return {
        "run_id": f"run-{EVIL}",
        "status": "done",
        "model": "fake-chat",
        "started_at": 1_700_000_000.0,
        "ended_at": 1_700_000_012.5,
        "runtime_seconds": 12.5,
        "iterations": 3,
        "usage": {
            "totals": {
                "llm_calls": 9,
                "input_tokens": 2510,
                "output_tokens": 171,
                "total_tokens": 2681,
                "cache_hits": 0,
            },
            "per_node": per_node,
        },
        "scores_per_iteration": [
            {"iteration": i, "scores": {"faithfulness": f, "persona_fit": p}}
            for i, f, p in ((1, 0.5, 0.2), (2, 0.7, 0.4), (3, 0.9, 0.45))
        ],
        "final_scores": {"faithfulness": 0.9, "persona_fit": 0.45},
        "baseline": {"faithfulness": 0.8, "persona_fit": 0.5},
        "baseline_met": False,
        "counts": {"accepted": 1, "rejected": 1, "unanswerable": 0, "duplicates_removed": 0},
        "warnings": [
            {"level": "warning", "stage": "decide", "message": f"not met {EVIL}", "item": "q<1>"}
        ],
        "errors": [{"level": "error", "stage": "answer", "message": IMG, "item": None}],
        "recommendations": [
            {"kind": "baseline", "message": f"use a stronger model {EVIL}", "evidence": [IMG]}
        ],
    }


def _inputs() -> dict[str, Any]:
    pairs, rejected = _pairs()
    return {
        "metadata": _metadata(),
        "pairs": pairs,
        "rejected": rejected,
        "persona": {
            "name": f"Maya {EVIL}",
            "description": "nurse & first-time buyer",
            "language": "en",
            "goals": [f"buy a flat {IMG}"],
            "pain_points": ["jargon"],
        },
        "goal": {
            "name": "qa",
            "description": "Q/A <pairs>",
            "baseline": {"faithfulness": 0.8},
            "params": {"num_questions": 3},
            "user_prompts": [EVIL],
            "prompts": {"answer": {"system": f"answer {EVIL}"}},
        },
        "constraints": {
            "filter_out": [{"keyword": ["<secret>", "x&y"], "applies_to": "answer"}],
            "check_for": [{"max_words": 120, "applies_to": "answer"}],
        },
        "data_refs": [
            {"id": DOC_A, "source": 'https://docs.example.org/a"><script>', "chunks": 1},
            {"id": DOC_B, "source": "inline:<b>", "format": "txt", "chunks": 2},
        ],
    }


@pytest.fixture
def report(tmp_path: Path) -> tuple[Path, str, BeautifulSoup]:
    path = write_report(tmp_path / "bundle", **_inputs())
    raw = path.read_text(encoding="utf-8")
    return path, raw, BeautifulSoup(raw, "html.parser")


def test_writes_report_html_into_the_bundle(report: tuple[Path, str, BeautifulSoup]) -> None:
    path, raw, _ = report
    assert path.name == REPORT_NAME and path.parent.name == "bundle"
    assert raw.startswith("<!DOCTYPE html>")
    assert not list(path.parent.glob("*.tmp"))


def test_every_section_is_there(report: tuple[Path, str, BeautifulSoup]) -> None:
    _, _, soup = report
    for section in (
        "summary",
        "persona",
        "goal",
        "constraints",
        "data",
        "plots",
        "pairs",
        "rejected",
        "recommendations",
        "warnings",
    ):
        node = soup.find("section", id=section)
        assert node is not None and node.find("h2"), section
    assert "How much deposit?" in soup.find(id="pairs").get_text()
    assert "What about <tax>?" in soup.find(id="rejected").get_text()
    assert "persona_fit 0.20 is below 0.50" in soup.find(id="rejected").get_text()
    assert "answer mentions" in soup.find(id="rejected").get_text()
    assert "use a stronger model" in soup.find(id="recommendations").get_text()
    warnings = soup.find(id="warnings").get_text()
    assert "not met" in warnings and "error" in warnings
    assert soup.find(id="warnings").find("a", href="#pair-q-1")  # links the item
    assert soup.find(id="pair-q-1") is not None
    assert "x&y" in soup.find(id="constraints").get_text()
    assert "inline:<b>" in soup.find(id="data").get_text()


def test_user_text_is_escaped_everywhere(report: tuple[Path, str, BeautifulSoup]) -> None:
    _, raw, soup = report
    assert soup.find("script") is None and soup.find("img") is None and soup.find("b") is None
    for tag in soup.find_all(True):
        assert not [a for a in tag.attrs if a.lower().startswith("on")], tag.name
    assert EVIL not in raw and IMG not in raw
    assert html.escape(EVIL) in raw
    # Nothing is loaded from anywhere: no remote src/href, no url() in CSS, a strict CSP.
    for tag in soup.find_all(True):
        for attr in ("src", "href", "xlink:href", "action", "poster", "srcset"):
            value = tag.get(attr)
            assert value is None or str(value).startswith("#"), (tag.name, attr, value)
    assert "url(" not in raw and "@import" not in raw
    csp = soup.find("meta", attrs={"http-equiv": "Content-Security-Policy"})
    assert csp is not None and "default-src 'none'" in csp["content"]


def test_source_spans_are_highlighted_and_escaped(report: tuple[Path, str, BeautifulSoup]) -> None:
    _, raw, soup = report
    pair = _pairs()[0][0]
    article = soup.find(id="pair-q-1")
    marks = [m.get_text() for m in article.find_all("mark", class_="span")]
    for span in pair.spans:
        assert span.text in marks  # listed, and marked inside its context when it has one
        assert html.escape(span.text) in raw
    assert raw.count(html.escape(pair.spans[0].text)) >= 2
    context = article.find("div", class_="context")
    assert context.get_text().endswith(TEXT_A)  # the context text survives, unescaped by parsing
    assert [m.get_text() for m in context.find_all("mark")] == ["Deposits", pair.spans[0].text]
    assert "<fees>" not in raw and "&lt;fees&gt;" in raw


def test_score_plots_one_per_metric_with_dashed_baseline(
    report: tuple[Path, str, BeautifulSoup],
) -> None:
    _, _, soup = report
    container = soup.find(id="plot-scores")
    charts = container.find_all("svg", class_="plot-score")
    assert [c["id"] for c in charts] == ["plot-score-faithfulness", "plot-score-persona_fit"]
    for chart in charts:
        points = chart.find("polyline", class_="series")["points"].split()
        assert len(points) == 3 and len(chart.find_all("circle", class_="point")) == 3
        xs = [float(p.split(",")[0]) for p in points]
        assert xs == sorted(xs)
        baseline = chart.find("line", class_="baseline")
        assert baseline is not None and baseline["stroke-dasharray"]
    # Higher scores are drawn higher (smaller y); the 0.8 baseline sits between 0.7 and 0.9.
    faith = charts[0]
    ys = [float(p.split(",")[1]) for p in faith.find("polyline")["points"].split()]
    assert ys[0] > ys[1] > ys[2]
    assert ys[2] < float(faith.find("line", class_="baseline")["y1"]) < ys[1]


def test_token_and_time_bars_per_stage(report: tuple[Path, str, BeautifulSoup]) -> None:
    _, _, soup = report
    tokens = soup.find("svg", id="plot-tokens")
    seconds = soup.find("svg", id="plot-time")
    assert len(tokens.find_all("rect", class_="bar")) == 3 * 2  # input + output per stage
    assert len(seconds.find_all("rect", class_="bar")) == 3
    widths = {
        r.find("title").get_text().split(" seconds")[0]: float(r["width"])
        for r in seconds.find_all("rect")
    }
    assert widths["answer"] > widths["generate_questions"] > 0
    assert f"evil{EVIL}" in widths  # the label is text, not markup


def test_empty_run_still_renders(tmp_path: Path) -> None:
    raw = render_report(
        {"run_id": "r", "status": "failed"}, [], [], {"name": "P"}, {"name": "qa"}, {}, []
    )
    soup = BeautifulSoup(raw, "html.parser")
    assert "no scores were recorded" in soup.find(id="plots").get_text()
    assert soup.find("svg", id="plot-tokens") is not None
    assert "no pairs were kept" in soup.find(id="pairs").get_text()
    assert "nothing was rejected" in soup.find(id="rejected").get_text()


@pytest.mark.parametrize(
    ("text", "ranges", "expected"),
    [
        ("a<b>c", [(1, 4)], 'a<mark class="span">&lt;b&gt;</mark>c'),
        ("abcdef", [(0, 2), (1, 4)], '<mark class="span">abcd</mark>ef'),
        ("abc", [(2, 99), (-5, 1)], '<mark class="span">a</mark>b<mark class="span">c</mark>'),
        ("abc", [(2, 2)], "abc"),
        ("x&y", [], "x&amp;y"),
    ],
)
def test_highlight(text: str, ranges: list[tuple[int, int]], expected: str) -> None:
    assert _highlight(text, ranges) == expected


def test_report_from_bundle_files(tmp_path: Path) -> None:
    import json

    from personagen.store.bundle import qa_row, write_json, write_jsonl

    inputs = _inputs()
    bundle = tmp_path / "b"
    bundle.mkdir()
    sources = {r["id"]: r["source"] for r in inputs["data_refs"]}
    write_jsonl(bundle / "qa.jsonl", [qa_row(p, sources) for p in inputs["pairs"]])
    write_jsonl(bundle / "rejected.jsonl", [qa_row(p, sources) for p in inputs["rejected"]])
    for name in ("metadata", "persona", "goal", "constraints", "data_refs"):
        write_json(bundle / f"{name}.json", inputs[name])
    path = write_report_from_bundle(bundle)
    soup = BeautifulSoup(path.read_text(), "html.parser")
    assert soup.find(id="pair-q-1") is not None
    row = json.loads((bundle / "rejected.jsonl").read_text())
    assert pair_from_row(row).feedback == inputs["rejected"][0].feedback


# --- recommendations: chunks never retrieved, persona needs not covered ------------------------


def _persona(**kw: Any) -> PersonaProfile:
    return PersonaProfile(name="Maya", description="nurse", role="nurse", expertise="novice", **kw)


def _recommend(pairs: list[QAPair], persona: PersonaProfile | None = None, **kw: Any) -> Any:
    return recommend(
        persona=persona or _persona(goals=["buy"], pain_points=["fees"]),
        pairs=pairs,
        reports=[
            IterationReport(
                iteration=1, scores={}, accepted=1, failing=0, unanswerable=0, baseline_met=True
            )
        ],
        baseline={},
        max_iterations=2,
        model_name="m",
        **kw,
    )


def _chunks() -> list[Chunk]:
    return [
        Chunk(id=f"{DOC_A[:12]}:0-10", doc_id=DOC_A, index=0, start=0, end=10, text="x" * 10),
        Chunk(id=f"{DOC_A[:12]}:10-20", doc_id=DOC_A, index=1, start=10, end=20, text="y" * 10),
        Chunk(id=f"{DOC_B[:12]}:0-10", doc_id=DOC_B, index=0, start=0, end=10, text="z" * 10),
    ]


def _pair_with(*contexts: RetrievedContext, status: str = "accepted", q: str = "q") -> QAPair:
    return QAPair(id=q, question=q, answer="a", status=status, contexts=list(contexts))  # type: ignore[arg-type]


def test_chunks_never_retrieved_named_by_id() -> None:
    pair = _pair_with(_context(DOC_A, 0, 10, "x" * 10))
    refs = [
        {"id": DOC_A, "source": "a.md", "chunks": 2},
        {"id": DOC_B, "source": "b.md", "chunks": 1},
    ]
    recs = {r["kind"]: r for r in _recommend([pair], chunks=_chunks(), data_refs=refs)}
    unused = recs["unused_data"]
    assert unused["message"].startswith("2 of 3 chunk(s) were never retrieved")
    assert "1 document(s) never used: b.md" in unused["message"]
    assert unused["evidence"] == [f"{DOC_A[:12]}:10-20 (a.md)", f"{DOC_B[:12]}:0-10 (b.md)"]


def test_chunks_never_retrieved_from_data_refs_counts() -> None:
    pair = _pair_with(_context(DOC_A, 0, 10, "x"), status="rejected")  # any pair's contexts count
    refs = [
        {"id": DOC_A, "source": "a.md", "chunks": 2},
        {"id": DOC_B, "source": "b.md", "chunks": 3},
    ]
    recs = {r["kind"]: r for r in _recommend([pair], data_refs=refs)}
    assert recs["unused_data"]["message"].startswith("4 of 5 chunk(s)")
    assert recs["unused_data"]["evidence"] == [
        "a.md: 1 of 2 chunk(s) retrieved",
        "b.md: 0 of 3 chunk(s) retrieved",
    ]


def test_no_unused_data_when_everything_was_retrieved_or_unknown() -> None:
    pairs = [
        _pair_with(_context(DOC_A, 0, 10, "x"), _context(DOC_A, 10, 20, "y")),
        _pair_with(_context(DOC_B, 0, 10, "z"), q="q2"),
    ]
    assert "unused_data" not in {r["kind"] for r in _recommend(pairs, chunks=_chunks())}
    assert "unused_data" not in {r["kind"] for r in _recommend(pairs)}  # old call: no data given
    # One chunk of three missed, in a document that was used: below the share, not reported.
    few = [_pair_with(_context(DOC_A, 0, 10, "x"), _context(DOC_B, 0, 10, "z"))]
    assert "unused_data" not in {r["kind"] for r in _recommend(few, chunks=_chunks())}


def test_persona_needs_not_covered() -> None:
    persona = _persona(
        goals=["understand mortgages", "keep within budget"],
        pain_points=["zoological taxonomy", "solicitor fees"],
        interests=["Paying less tax"],
    )
    accepted = QAPair(
        id="q1",
        question="What does a mortgage cost each month?",
        answer="It depends on the budget; fees apply.",
        status="accepted",
    )
    rejected = QAPair(
        id="q2", question="Is there zoological taxonomy?", answer="x", status="rejected"
    )
    recs = {r["kind"]: r for r in _recommend([accepted, rejected], persona=persona)}
    uncovered = recs["uncovered_needs"]
    assert uncovered["evidence"] == ["zoological taxonomy", "Paying less tax"]
    assert uncovered["message"].startswith("2 of 5 persona need(s)")


def test_needs_are_not_reported_without_accepted_pairs() -> None:
    persona = _persona(goals=["zoology"], pain_points=["taxonomy"])
    rejected = QAPair(id="q2", question="Anything?", answer="x", status="rejected")
    assert "uncovered_needs" not in {r["kind"] for r in _recommend([rejected], persona=persona)}


def test_recommendations_render_in_the_report(tmp_path: Path) -> None:
    inputs = _inputs()
    pair = _pair_with(_context(DOC_A, 0, 10, "x"))
    inputs["metadata"]["recommendations"] = _recommend([pair], chunks=_chunks())
    raw = render_report(**inputs)
    text = BeautifulSoup(raw, "html.parser").find(id="recommendations").get_text()
    assert "unused_data" in text and re.search(r"evidence \(2\)", text)
