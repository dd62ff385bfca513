"""The labelled quality set is sound, and benchmarks/quality.py measures what it says it does."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "benchmarks" / "data" / "quality"


def _load_benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "quality_benchmark", ROOT / "benchmarks/quality.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


quality = _load_benchmark()
LABELS = quality.load_labels()


def _text(doc: str) -> str:
    return (DATA / doc).read_text(encoding="utf-8")


def test_the_set_has_enough_questions_over_enough_long_documents() -> None:
    per_doc = Counter(q.doc for q in LABELS.questions)
    assert len(LABELS.questions) >= 30
    assert len(per_doc) >= 3
    assert min(per_doc.values()) >= 8, per_doc
    for doc in per_doc:
        assert len(_text(doc).split()) >= 1400, doc
        persona = LABELS.personas[doc]
        assert persona.name and persona.description and persona.expertise


def test_ids_are_unique_and_answers_differ() -> None:
    ids = [q.id for q in LABELS.questions]
    assert len(ids) == len(set(ids))
    for q in LABELS.questions:
        assert q.correct.strip() != q.wrong.strip(), q.id
        assert q.correct not in _text(q.doc), f"{q.id}: correct answer should be a paraphrase"


def test_every_gold_passage_is_verbatim_and_one_to_three_sentences() -> None:
    for q in LABELS.questions:
        assert q.gold in _text(q.doc), q.id
        sentences = [s for s in re.split(r"(?<=[.!?:])\s+(?=[A-Z`|])", q.gold.strip()) if s]
        assert 1 <= len(sentences) <= 3, (q.id, sentences)


def test_wrong_kinds_are_legal_and_both_are_well_represented() -> None:
    kinds = Counter(q.wrong_kind for q in LABELS.questions)
    assert set(kinds) == {"contradiction", "off_question"}
    assert min(kinds.values()) >= 0.4 * len(LABELS.questions), kinds


def test_off_question_wrong_answers_are_true_sentences_away_from_the_gold() -> None:
    for q in LABELS.questions:
        if q.wrong_kind != "off_question":
            continue
        text = _text(q.doc)
        start = text.find(q.wrong)
        assert start >= 0, f"{q.id}: not verbatim"
        gold_start = text.find(q.gold)
        gold_end = gold_start + len(q.gold)
        assert start + len(q.wrong) <= gold_start or start >= gold_end, f"{q.id}: overlaps gold"


def test_the_set_carries_ugly_text() -> None:
    """Quotes, backslashes, braces and Windows paths reach the pipeline through the gold."""
    golds = " ".join(q.gold for q in LABELS.questions)
    for needle in ('"', "\\", "{", "C:/", "`"):
        assert needle in golds, needle
    assert 'hasattr(sys, "real_prefix")' in golds


def test_check_labels_passes_the_shipped_set() -> None:
    assert quality.check_labels(LABELS) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"gold": "Indent with five spaces."}, "gold passage is not verbatim"),
        ({"wrong_kind": "sarcasm"}, "wrong_kind 'sarcasm'"),
        ({"wrong": "SAME"}, "are the same"),
        ({"wrong_kind": "off_question", "wrong": "Not in the document."}, "not verbatim"),
        ({"id": "py-line-length"}, "used 2 times"),
    ],
)
def test_check_labels_names_each_broken_entry(change: dict[str, str], expected: str) -> None:
    first = LABELS.questions[0]
    if change.get("wrong") == "SAME":
        change = {"wrong": first.correct}
    broken = dataclasses.replace(
        LABELS, questions=[dataclasses.replace(first, **change), *LABELS.questions[1:]]
    )
    problems = quality.check_labels(broken)
    assert any(expected in p for p in problems), problems


def test_off_question_overlapping_the_gold_is_reported() -> None:
    first = next(q for q in LABELS.questions if q.wrong_kind == "off_question")
    inside = dataclasses.replace(first, wrong=first.gold[: len(first.gold) // 2])
    broken = dataclasses.replace(LABELS, questions=[inside])
    assert any("overlaps the gold" in p for p in quality.check_labels(broken))


def test_load_labels_names_the_entry_missing_a_field(tmp_path: Path) -> None:
    path = tmp_path / "labels.yaml"
    path.write_text('questions:\n- {id: q1, doc: a.md, question: "Why?"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="question q1 lacks 'gold'"):
        quality.load_labels(path)


def test_auc_is_rank_based_with_ties_as_half() -> None:
    assert quality.auc([1.0, 0.9], [0.1, 0.2]) == 1.0
    assert quality.auc([0.1], [0.9]) == 0.0
    assert quality.auc([0.5, 0.5], [0.5]) == 0.5
    assert quality.auc([1.0, 0.5], [0.5]) == 0.75
    assert quality.auc([], [0.5]) is None


def test_bundle_rows_never_count_unverified_or_unanswerable_as_accepted(tmp_path: Path) -> None:
    rows = {
        "qa.jsonl": [
            {"question": "a", "status": "accepted"},
            {"question": "b", "status": "unanswerable", "answerable": False},
            {"question": "c", "status": "accepted", "unverified": True},
        ],
        "rejected.jsonl": [{"question": "d", "status": "rejected"}],
        "unverified.jsonl": [{"question": "e", "status": "unverified"}],
    }
    for name, lines in rows.items():
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in lines), "utf-8")
    found = {row["question"]: outcome for outcome, row in quality.bundle_rows(tmp_path)}
    assert found == {
        "a": "accepted",
        "b": "unanswerable",
        "c": "unverified",
        "d": "rejected",
        "e": "unverified",
    }


def test_hits_and_retrieval_are_measured_against_the_gold_range() -> None:
    label = next(q for q in LABELS.questions if q.id == "py-real-prefix")
    text = _text(label.doc)
    start = text.find(label.gold)
    end = start + len(label.gold)

    def row(question: str, spans: list[tuple[int, int]], contexts: list[tuple[int, int]]) -> Any:
        return {
            "question": question,
            "answer": "x",
            "scores": {"faithfulness": 1},
            "spans": [{"doc_id": "d", "start": s, "end": e} for s, e in spans],
            "contexts": [{"doc_id": "d", "start": s, "end": e} for s, e in contexts],
        }

    other = next(q for q in LABELS.questions if q.doc == label.doc and q.id != label.id)
    o_start = text.find(other.gold)
    o_end = o_start + len(other.gold)
    rows = [
        # a span touching the gold's last character; the gold split over two contexts
        (
            "accepted",
            row(label.question, [(end - 1, end + 50)], [(0, start + 5), (start + 5, end)]),
        ),
        # a span just after the gold; a context that misses the gold's first character
        ("rejected", row(other.question, [(o_end, o_end + 10)], [(o_start + 1, o_end)])),
    ]
    results = quality.score_pairs([label, other], rows, text, "d")
    assert [(r.outcome, r.hit, r.gold_retrieved) for r in results] == [
        ("accepted", True, True),
        ("rejected", False, False),
    ]
    missing = quality.score_pairs([label], [], text, "d")
    assert missing[0].outcome == "missing"


def test_selftest_verdicts_read_the_run_report_and_a_bare_mapping() -> None:
    verdict = {"auc": 0.5, "passed": False, "probes": 4, "good": [1.0], "reason": "r"}
    report = {"probes": 4, "tokens": 120, "metrics": {"faithfulness": verdict}, "note": None}
    expected = {"faithfulness": {"auc": 0.5, "passed": False, "probes": 4}}
    assert quality.selftest_verdicts(report) == expected
    assert quality.selftest_verdicts({"faithfulness": verdict, "tokens": 9}) == expected
    assert quality.selftest_verdicts({}) == {}


def test_importing_the_benchmark_does_no_work() -> None:
    assert "personagen.api" not in quality.__dict__
    assert callable(quality.main)


@pytest.mark.slow  # ~15 s: nine runs (3 documents x model / correct / wrong answers)
async def test_fake_provider_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two questions per document through PersonaGen: every question is found in every run."""
    summary = await quality.amain(
        ["--provider", "fake", "--limit", "2", "--json", "--out", str(tmp_path)]
    )
    printed = json.loads(capsys.readouterr().out)
    assert printed["questions"] == summary["questions"] == 6
    assert {c: r["runs"] for c, r in summary["runs"].items()} == {
        "model": 3,
        "correct": 3,
        "wrong": 3,
    }
    assert all(s == "done" for r in summary["runs"].values() for s in r["statuses"])
    for detail in printed["runs_detail"]:
        assert [p["outcome"] != "missing" for p in detail["pairs"]] == [True, True], detail
        if detail["config"] == "model":
            assert detail["tokens"] > 0  # injected runs may be served wholly by the cache
        else:
            # the injected answer is what the judges saw and what the bundle holds
            wanted = {q.id: getattr(q, detail["config"]) for q in LABELS.questions}
            assert all(p["answer"] == wanted[p["id"]] for p in detail["pairs"]), detail
    for rate in ("answer_hit_rate", "gold_retrieved_rate", "accept_rate_correct"):
        assert summary[rate]["of"] == 6
        assert 0 <= summary[rate]["rate"] <= 1
    assert summary["auc"], "no metric was scored"
    for metric, row in summary["auc"].items():
        # a metric a cheaper gate ran before may have scored only one side: no AUC then
        if row["n_correct"] and row["n_wrong"]:
            assert 0 <= row["auc"] <= 1, metric
        else:
            assert row["auc"] is None, metric
    assert any(row["auc"] is not None for row in summary["auc"].values())
    table = quality.render_table(summary)
    assert "answer hit rate" in table and "faithfulness" in table
    # a rerun on the same --out takes every finished run from its journal: nothing is run again
    calls: list[Any] = []
    monkeypatch.setattr(quality, "run_doc", lambda *a, **k: calls.append(a))
    again = await quality.amain(["--provider", "fake", "--limit", "2", "--out", str(tmp_path)])
    assert calls == []
    assert again == {k: v for k, v in summary.items() if k != "runs_detail"}
