"""The whole Q/A graph driven by the scripted fake model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from personagen.api import arun
from personagen.data.chunk_store import ChunkStore
from personagen.llm.fake import FakeChatModel, FakeRequest, default_response


async def _run(tmp_path: Path, spec: dict[str, Any], model: FakeChatModel) -> Any:
    return await arun(
        spec, chat_model=model, out_dir=tmp_path / "out", state_dir=tmp_path / "state"
    )


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_meets_baseline_in_one_iteration(tmp_path: Path, make_spec: Any) -> None:
    model = FakeChatModel()
    spec = make_spec(persona={"custom_questions": ["How much deposit do lenders ask for?"]})
    result = await _run(tmp_path, spec, model)

    assert result.status == "done"
    assert len(result.reports) == 1 and result.reports[0].baseline_met
    bundle = result.bundle_dir
    for name in (
        "persona.json",
        "goal.json",
        "constraints.json",
        "data_refs.json",
        "qa.jsonl",
        "rejected.jsonl",
        "qa_finetune.jsonl",
        "metadata.json",
    ):
        assert (bundle / name).is_file(), name
    params = json.loads((bundle / "rag" / "params.json").read_text())
    assert params["status"] == "done" and params["chosen"]["span_recall"] > 0
    assert (bundle / "rag" / "chunks.jsonl").read_text().strip()
    rows = _lines(bundle / "qa.jsonl")
    questions = [r["question"] for r in rows]
    assert "How much deposit do lenders ask for?" in questions  # custom question verbatim
    assert len(questions) == len(set(questions)) == 4  # 3 generated + 1 custom
    assert len(model.calls_for("AnswerOut")) == 4


async def test_spans_point_at_source_text(tmp_path: Path, make_spec: Any) -> None:
    result = await _run(tmp_path, make_spec(), FakeChatModel())
    store = ChunkStore(tmp_path / "state" / "chunks.sqlite")
    try:
        spans = [s for p in result.accepted for s in p.spans]
        assert spans
        for span in spans:
            assert store.get_text(span.doc_id)[span.start : span.end] == span.text
        refs = {r["id"]: r for r in json.loads((result.bundle_dir / "data_refs.json").read_text())}
        for row in _lines(result.bundle_dir / "qa.jsonl"):
            for span in row["spans"]:
                assert span["doc_id"] in refs and span["source"].endswith(".md")
    finally:
        store.close()


async def test_only_failing_pairs_are_reanswered(tmp_path: Path, make_spec: Any) -> None:
    judged: dict[str, int] = {}
    failed: set[str] = set()

    def persona_fit(request: FakeRequest) -> dict[str, Any]:
        question = request.tag("question")[0]
        judged[question] = judged.get(question, 0) + 1
        # The first two questions judged get a bad *answer* fit on their first judgement.
        if judged[question] == 1 and len(failed) < 2:
            failed.add(question)
            return {"reason": "too technical for a novice", "question_fit": 5, "answer_fit": 1}
        return {"reason": "fits", "question_fit": 5, "answer_fit": 5}

    model = FakeChatModel(responders={"PersonaFitOut": persona_fit})
    # The scripted judge changes its mind on the same prompt: keep the cache out of it.
    result = await _run(tmp_path, make_spec(run={"cache": False}), model)

    assert result.status == "done"
    assert [r.baseline_met for r in result.reports] == [False, True]
    answers = model.calls_for("AnswerOut")
    assert len(answers) == 3 + 2  # every question once, the two failing ones again
    reanswered = [c for c in answers if "was rejected" in c.user]
    assert {c.tag("question")[0] for c in reanswered} == failed
    assert all("too technical for a novice" in c.user for c in reanswered)  # judge reason fed back
    assert len(result.accepted) == 3
    history = [p for p in result.accepted if p.history]
    assert {p.question for p in history} == failed


async def test_max_iterations_reached_is_reported(tmp_path: Path, make_spec: Any) -> None:
    model = FakeChatModel(
        responders={
            "PersonaFitOut": lambda r: {"reason": "off", "question_fit": 5, "answer_fit": 1}
        }
    )
    result = await _run(tmp_path, make_spec(run={"max_iterations": 2}), model)

    assert result.status == "done"
    assert len(result.reports) == 2 and not result.reports[-1].baseline_met
    assert not result.accepted and len(result.rejected) == 3
    warnings = [e.message for e in result.events if e.level == "warning"]
    assert any(
        "baseline not met after 2 of 2 iteration(s)" in w and "persona_fit" in w for w in warnings
    )
    rejected = _lines(result.bundle_dir / "rejected.jsonl")
    assert len(rejected) == 3
    assert all(any("persona_fit" in reason for reason in row["reasons"]) for row in rejected)
    metadata = json.loads((result.bundle_dir / "metadata.json").read_text())
    assert metadata["baseline_met"] is False
    assert any(r["kind"] == "baseline" for r in metadata["recommendations"])


async def test_constraint_violation_is_repaired(tmp_path: Path, make_spec: Any) -> None:
    def answer(request: FakeRequest) -> dict[str, Any]:
        out = default_response(request)
        if "was rejected" in request.user and out["answerable"]:
            out["answer"] = " ".join(out["answer"].split()[:6])  # shorter, same quote
        return out

    model = FakeChatModel(responders={"AnswerOut": answer})
    spec = make_spec(constraints={"check_for": [{"max_words": 8}]})
    result = await _run(tmp_path, spec, model)

    first = result.reports[0]
    assert not first.baseline_met and any("max_words:8" in s for s in first.shortfalls)
    assert result.reports[-1].baseline_met
    for pair in result.accepted:
        assert len(pair.answer.split()) <= 8
    repaired = [p for p in result.accepted if p.history]
    assert repaired and all("words" in " ".join(p.history[0]["reasons"]) for p in repaired)


async def test_unanswerable_custom_question_is_kept_and_reported(
    tmp_path: Path, make_spec: Any
) -> None:
    spec = make_spec(persona={"custom_questions": ["Which zebra breeds enjoy jazz festivals?"]})
    result = await _run(tmp_path, spec, FakeChatModel())
    pair = next(p for p in result.pairs.values() if p.origin == "custom")
    assert pair.status == "unanswerable" and pair.answer == ""
    rows = _lines(result.bundle_dir / "qa.jsonl")
    assert any(r["question"] == pair.question and r["answerable"] is False for r in rows)
    metadata = json.loads((result.bundle_dir / "metadata.json").read_text())
    add_data = [r for r in metadata["recommendations"] if r["kind"] == "add_data"]
    assert add_data and pair.question in add_data[0]["evidence"]


async def test_duplicate_questions_are_removed(tmp_path: Path, make_spec: Any) -> None:
    def questions(request: FakeRequest) -> dict[str, Any]:
        out = default_response(request)
        first = out["questions"][0]["question"]
        out["questions"].insert(1, {"question": first.replace("What should", "what should") + " "})
        return out

    model = FakeChatModel(responders={"QuestionsOut": questions})
    result = await _run(tmp_path, make_spec(), model)
    texts = [p.question.lower().strip() for p in result.pairs.values()]
    assert len(texts) == len(set(texts))
    metadata = json.loads((result.bundle_dir / "metadata.json").read_text())
    assert metadata["counts"]["duplicates_removed"] >= 1


async def test_token_accounting_adds_up(tmp_path: Path, make_spec: Any) -> None:
    model = FakeChatModel()
    result = await _run(tmp_path, make_spec(), model)
    usage = json.loads((result.bundle_dir / "metadata.json").read_text())["usage"]
    assert usage["totals"]["llm_calls"] == len(model.calls)
    expected = sum(
        sum(max(1, (len(str(m.content)) + 3) // 4) for m in call.messages) for call in model.calls
    )
    assert usage["totals"]["input_tokens"] == expected
    assert sum(int(row["llm_calls"]) for row in usage["per_node"].values()) == len(model.calls)
    assert usage["per_model"]["fake-chat"]["calls"] == len(model.calls)


async def test_bad_data_source_fails_naming_it(tmp_path: Path, make_spec: Any) -> None:
    from personagen.errors import DataSourceError

    spec = make_spec(data=[{"path": str(tmp_path / "missing" / "*.md")}])
    with pytest.raises(DataSourceError, match="missing"):
        await _run(tmp_path, spec, FakeChatModel())


def test_extractive_answers_are_faithful_by_construction() -> None:
    from personagen.evaluators.grounding import is_extractive

    spans = ["Most lenders ask for a deposit\nof at least five percent.", "Fees apply."]
    assert is_extractive(
        "Most lenders ask for a deposit of at least five percent. Fees apply.", spans
    )
    assert not is_extractive(
        "Most lenders ask for a deposit of at least five percent. So yes!", spans
    )
    assert not is_extractive("", spans) and not is_extractive("Fees apply.", [])


@pytest.mark.parametrize(
    ("goal", "params"),
    [("summary", {}), ("rewrite", {"instruction": "Rewrite it as a checklist for me."})],
)
async def test_every_goal_returns_its_outputs_to_python(
    tmp_path: Path, make_spec: Any, goal: str, params: dict[str, Any]
) -> None:
    spec = make_spec(goal={"name": goal, "params": params})
    result = await _run(tmp_path, spec, FakeChatModel())
    assert result.status == "done" and not result.pairs
    if goal == "summary":
        assert result.summary is not None and result.summary.status == "accepted"
        assert result.summary.sections and not result.rewrites
    else:
        assert result.summary is None and result.rewrites
        assert all(item.status == "accepted" and item.parts for item in result.rewrites.values())
