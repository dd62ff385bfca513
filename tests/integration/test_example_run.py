"""The real graph on the example data, with the SQLite checkpointer on disk."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

import personagen
from personagen.llm.fake import FakeChatModel

from ..conftest import EXAMPLE_SPEC

pytestmark = pytest.mark.integration


def test_example_bundle_files_and_fields(tmp_path: Path) -> None:
    spec = personagen.load_spec(EXAMPLE_SPEC).model_copy(deep=True)
    spec.llm.provider = "fake"
    result = personagen.run(
        spec,
        chat_model=FakeChatModel(),
        out_dir=tmp_path / "out",
        state_dir=tmp_path / "state",
        run_id="example-1",
    )
    assert result.status == "done"
    bundle = tmp_path / "out" / "example-1"
    assert result.bundle_dir == bundle

    checkpoints = tmp_path / "state" / "checkpoints.sqlite"
    with sqlite3.connect(checkpoints) as db:
        threads = {row[0] for row in db.execute("select distinct thread_id from checkpoints")}
    assert threads == {"example-1"}

    persona = json.loads((bundle / "persona.json").read_text())
    assert persona["name"] == "Maya" and persona["custom_questions"]
    goal = json.loads((bundle / "goal.json").read_text())
    assert goal["name"] == "qa" and goal["user_prompts"] == [
        "Prefer practical, step-by-step questions."
    ]
    refs = json.loads((bundle / "data_refs.json").read_text())
    assert len(refs) == 3 and all(len(r["sha256"]) == 64 and r["chunks"] > 0 for r in refs)
    rows = [json.loads(x) for x in (bundle / "qa.jsonl").read_text().splitlines()]
    assert rows
    for row in rows:
        assert {"question", "answer", "contexts", "spans", "scores", "iteration"} <= row.keys()
        for span in row["spans"]:
            text = Path(span["source"]).read_text(encoding="utf-8")
            assert text[span["start"] : span["end"]] == span["text"]
    finetune = [json.loads(x) for x in (bundle / "qa_finetune.jsonl").read_text().splitlines()]
    assert all(
        [m["role"] for m in f["messages"]] == ["system", "user", "assistant"] for f in finetune
    )
    metadata = json.loads((bundle / "metadata.json").read_text())
    assert metadata["run_id"] == "example-1"
    assert {"compose_persona", "generate_questions", "answer", "evaluate"} <= set(
        metadata["usage"]["per_node"]
    )
    assert metadata["scores_per_iteration"] and "final_scores" in metadata


def test_resume_of_a_finished_run_makes_no_calls(tmp_path: Path) -> None:
    spec = personagen.load_spec(EXAMPLE_SPEC).model_copy(deep=True)
    spec.llm.provider = "fake"
    first = personagen.run(
        spec,
        chat_model=FakeChatModel(),
        out_dir=tmp_path / "out",
        state_dir=tmp_path / "state",
        run_id="r1",
    )
    model = FakeChatModel()
    again = personagen.resume(
        "r1", chat_model=model, out_dir=tmp_path / "out", state_dir=tmp_path / "state"
    )
    assert again.status == "done" and model.calls == []
    assert {p.question for p in again.accepted} == {p.question for p in first.accepted}


def test_resume_unknown_run(tmp_path: Path) -> None:
    with pytest.raises(personagen.errors.RunNotFound, match="nope"):
        personagen.resume("nope", state_dir=tmp_path)
