"""Human review hooks: approve, edit, reject with a note (fed to the regeneration), CLI file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from personagen.api import aresume, arun
from personagen.errors import SpecError
from personagen.llm.fake import FakeChatModel


def _kw(tmp_path: Path) -> dict[str, Any]:
    return {"out_dir": tmp_path / "out", "state_dir": tmp_path / "state"}


async def test_questions_hook_approve_all(tmp_path: Path, make_spec: Any) -> None:
    spec = make_spec(run={"review": ["questions"]})
    paused = await arun(spec, chat_model=FakeChatModel(), run_id="r", **_kw(tmp_path))
    assert paused.status == "waiting_for_review"
    assert paused.interrupt["hook"] == "questions" and len(paused.interrupt["items"]) == 3
    done = await aresume(
        "r", decision={"approve_all": True}, chat_model=FakeChatModel(), **_kw(tmp_path)
    )
    assert done.status == "done"
    assert {p.question for p in done.accepted} == {i["question"] for i in paused.interrupt["items"]}


async def test_edit_and_reject_with_note(tmp_path: Path, make_spec: Any) -> None:
    spec = make_spec(run={"review": ["questions"]})
    paused = await arun(spec, chat_model=FakeChatModel(), run_id="r", **_kw(tmp_path))
    first, second, _ = paused.interrupt["items"]
    decision = {
        "items": {
            first["id"]: {"action": "edit", "text": "How big a deposit do lenders ask for?"},
            second["id"]: {"action": "reject", "note": "ask about survey costs instead"},
        }
    }
    model = FakeChatModel()
    done = await aresume("r", decision=decision, chat_model=model, **_kw(tmp_path))
    while done.status == "waiting_for_review":  # later passes' replacement questions
        assert done.interrupt["hook"] == "questions" and done.interrupt["iteration"] > 1
        assert first["id"] not in {i["id"] for i in done.interrupt["items"]}  # the reviewer's
        done = await aresume("r", decision={"approve_all": True}, chat_model=model, **_kw(tmp_path))
    assert done.status == "done"
    edited = done.pairs[first["id"]]
    assert (
        edited.question == "How big a deposit do lenders ask for?" and edited.origin == "reviewer"
    )
    replacements = model.calls_for("ReplacementQuestionOut")
    # The first replacement is the reviewer-driven one and carries the note.
    assert replacements and "ask about survey costs instead" in replacements[0].user
    assert done.pairs[second["id"]].question != second["question"]
    rows = [json.loads(x) for x in (done.bundle_dir / "qa.jsonl").read_text().splitlines()]
    assert any(r["question"] == "How big a deposit do lenders ask for?" for r in rows)


async def test_answers_hook_reject_note_reaches_reanswer(tmp_path: Path, make_spec: Any) -> None:
    spec = make_spec(run={"review": ["answers"], "cache": False})
    paused = await arun(spec, chat_model=FakeChatModel(), run_id="r", **_kw(tmp_path))
    assert paused.interrupt["hook"] == "answers"
    target = paused.interrupt["items"][0]
    model = FakeChatModel()
    again = await aresume(
        "r",
        decision={
            "items": {target["id"]: {"action": "reject", "note": "mention the monthly cost"}}
        },
        chat_model=model,
        **_kw(tmp_path),
    )
    # Second pass pauses at the answers hook again, after re-answering only the rejected pair.
    assert again.status == "waiting_for_review"
    answers = model.calls_for("AnswerOut")
    assert len(answers) == 1 and "mention the monthly cost" in answers[0].user
    done = await aresume(
        "r", decision={"approve_all": True}, chat_model=FakeChatModel(), **_kw(tmp_path)
    )
    assert done.status == "done"


async def test_output_hook_edit_reaches_the_bundle(tmp_path: Path, make_spec: Any) -> None:
    spec = make_spec(run={"review": ["output"]})
    paused = await arun(spec, chat_model=FakeChatModel(), run_id="r", **_kw(tmp_path))
    assert paused.interrupt["hook"] == "output"
    a, b, c = paused.interrupt["items"][:3]
    source = "A survey of the property costs between four hundred and fifteen hundred pounds."
    decision = {
        "items": {
            a["id"]: {"action": "edit", "text": "Edited answer."},
            b["id"]: {"action": "reject", "note": "off topic"},
            c["id"]: {"action": "edit", "text": f"{source} Ask the lender."},
        }
    }
    done = await aresume("r", decision=decision, chat_model=FakeChatModel(), **_kw(tmp_path))
    rows = {
        r["id"]: r for r in map(json.loads, (done.bundle_dir / "qa.jsonl").read_text().splitlines())
    }
    rejected = {
        r["id"]: r
        for r in map(json.loads, (done.bundle_dir / "rejected.jsonl").read_text().splitlines())
    }
    assert rows[a["id"]]["answer"] == "Edited answer."
    # What the reviewer wrote is judged too (scores kept); the reviewer's acceptance stands.
    assert rows[a["id"]]["scores"]["grounding"] == 0.0 and rows[c["id"]]["scores"]
    # The text before the edit stays in the pair's history.
    assert rows[a["id"]]["history"][-1]["answer"] == a["answer"]
    assert rows[a["id"]]["history"][-1]["reasons"] == ["edited by the reviewer"]
    # An edited answer's spans are those of the new text: found in the sources, or none.
    assert rows[a["id"]]["spans"] == []
    edited = rows[c["id"]]
    assert [s["text"] for s in edited["spans"]] == [source]
    costs = (tmp_path / "docs" / "costs.md").read_text()
    span = edited["spans"][0]
    assert costs[span["start"] : span["end"]] == source and span["source"].endswith("costs.md")
    assert b["id"] in rejected and "off topic" in " ".join(rejected[b["id"]]["reasons"])


async def test_persona_hook_edit(tmp_path: Path, make_spec: Any) -> None:
    spec = make_spec(run={"review": ["persona"]})
    paused = await arun(spec, chat_model=FakeChatModel(), run_id="r", **_kw(tmp_path))
    assert paused.interrupt["hook"] == "persona" and paused.interrupt["persona"]["name"] == "Maya"
    done = await aresume(
        "r",
        decision={"persona": {"expertise": "expert"}},
        chat_model=FakeChatModel(),
        **_kw(tmp_path),
    )
    persona = json.loads((done.bundle_dir / "persona.json").read_text())
    assert persona["expertise"] == "expert"


async def test_auto_approve_skips_every_hook(tmp_path: Path, make_spec: Any) -> None:
    spec = make_spec(
        run={"review": ["persona", "questions", "answers", "output"], "auto_approve": True}
    )
    done = await arun(spec, chat_model=FakeChatModel(), **_kw(tmp_path))
    assert done.status == "done"


async def test_bad_decision_is_a_clear_error(tmp_path: Path, make_spec: Any) -> None:
    spec = make_spec(run={"review": ["questions"]})
    await arun(spec, chat_model=FakeChatModel(), run_id="r", **_kw(tmp_path))
    with pytest.raises(SpecError, match="unknown item"):
        await aresume(
            "r",
            decision={"items": {"nope": {"action": "approve"}}},
            chat_model=FakeChatModel(),
            **_kw(tmp_path),
        )


async def test_replacement_questions_are_reviewed_too(tmp_path: Path, make_spec: Any) -> None:
    from personagen.llm.fake import FakeRequest

    judged: dict[str, int] = {}

    def persona_fit(request: FakeRequest) -> dict[str, Any]:
        question = request.tag("question")[0]
        judged[question] = judged.get(question, 0) + 1
        if len(judged) == 1 and judged[question] == 1:
            return {"reason": "not a buyer's question", "question_fit": 1, "answer_fit": 5}
        return {"reason": "fits", "question_fit": 5, "answer_fit": 5}

    def model() -> FakeChatModel:
        return FakeChatModel(
            responders={
                "PersonaFitOut": persona_fit,
                "ReplacementQuestionOut": lambda r: {"question": "What does a survey cost?"},
            }
        )

    spec = make_spec(run={"review": ["questions"], "cache": False})
    first = await arun(spec, chat_model=model(), run_id="r", **_kw(tmp_path))
    assert len(first.interrupt["items"]) == 3 and first.interrupt["iteration"] == 1
    second = await aresume("r", decision={"approve_all": True}, chat_model=model(), **_kw(tmp_path))
    # The pass that replaced a question pauses again, for the new question only.
    assert second.status == "waiting_for_review" and second.interrupt["hook"] == "questions"
    assert [i["question"] for i in second.interrupt["items"]] == ["What does a survey cost?"]
    (item,) = second.interrupt["items"]
    decision = {"items": {item["id"]: {"action": "edit", "text": "How long does a survey take?"}}}
    done = await aresume("r", decision=decision, chat_model=model(), **_kw(tmp_path))
    assert done.status == "done"
    assert done.pairs[item["id"]].question == "How long does a survey take?"
