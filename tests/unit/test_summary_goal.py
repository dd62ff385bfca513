"""The summary goal end to end on the scripted fake model (map, combine, reduce, judge, refine)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from personagen.data.chunk_store import ChunkStore
from personagen.llm.fake import FakeChatModel, FakeRequest, default_response

from .goal_graph import run_loop

SUMMARY: dict[str, Any] = {"name": "summary", "params": {}}
INVENTED = "Every nurse gets a free house from the council after ten years of service."


def _spec(make_spec: Any, **overrides: Any) -> dict[str, Any]:
    goal = {**SUMMARY, **overrides.pop("goal", {})}
    return make_spec(goal=goal, **overrides)


async def test_summary_meets_baseline_with_grounded_claims(tmp_path: Path, make_spec: Any) -> None:
    model = FakeChatModel()
    run = await run_loop(tmp_path, _spec(make_spec), model)

    assert [r.baseline_met for r in run.reports] == [True]
    assert set(run.reports[0].scores) >= {"faithfulness", "coverage", "persona_fit"}
    summary = run.values["summary"]
    assert summary.status == "accepted"
    assert (run.bundle / "summary.md").read_text().startswith("# ")
    assert not (run.bundle / "summary_rejected.md").exists()
    claims = run.lines("summary_claims.jsonl")
    assert claims and all(c["supported"] and c["spans"] for c in claims)
    assert {c["section"] for c in claims} == {s.heading for s in summary.sections}
    store = ChunkStore(tmp_path / "chunks.sqlite")
    try:
        for claim in claims:
            for span in claim["spans"]:
                assert store.get_text(span["doc_id"])[span["start"] : span["end"]] == span["text"]
                assert span["source"].endswith(".md")
    finally:
        store.close()
    record = run.json("summary.json")
    assert record["status"] == "accepted" and record["notes"]
    assert all(n["used"] and n["spans"] for n in record["notes"])
    metadata = run.json("metadata.json")
    assert metadata["baseline_met"] is True
    assert metadata["summary"]["claims"] == metadata["summary"]["supported_claims"] == len(claims)
    # One map call per document (each is shorter than map_chars), one reduce, no combine.
    assert len(model.calls_for("SummaryNotesOut")) == 2
    assert len(model.calls_for("SummaryDraftOut")) == 1
    assert len(model.calls_for("NeedCoverageOut")) == 1  # the persona has one need
    assert len(model.calls_for("SummaryFitOut")) == 1


async def test_judge_reasons_are_fed_back_until_the_baseline(
    tmp_path: Path, make_spec: Any
) -> None:
    verdicts = iter([(2, "too technical for a novice"), (5, "plain and short")])

    def fit(request: FakeRequest) -> dict[str, Any]:
        score, reason = next(verdicts)
        return {"reason": reason, "score": score}

    model = FakeChatModel(responders={"SummaryFitOut": fit})
    run = await run_loop(tmp_path, _spec(make_spec, run={"cache": False}), model)

    assert [r.baseline_met for r in run.reports] == [False, True]
    assert any("persona_fit" in s for s in run.reports[0].shortfalls)
    writes = model.calls_for("SummaryDraftOut")
    assert len(writes) == 2
    assert "<previous_summary>" not in writes[0].user
    assert "<previous_summary>" in writes[1].user and "too technical for a novice" in writes[1].user
    assert len(model.calls_for("SummaryNotesOut")) == 2  # notes are taken once, not per pass
    summary = run.values["summary"]
    assert summary.status == "accepted" and summary.attempts == 2 and run.values["iteration"] == 2
    assert len(summary.history) == 1 and "too technical" in " ".join(summary.history[0]["reasons"])
    assert run.json("summary.json")["history"][0]["scores"]["persona_fit"] == 0.25


async def test_unsupported_claims_fail_faithfulness(tmp_path: Path, make_spec: Any) -> None:
    def draft(request: FakeRequest) -> dict[str, Any]:
        out = default_response(request)
        if "<previous_summary>" not in request.user:
            out["sections"].append({"heading": "Extra", "text": INVENTED})
            out["sections"].append({"heading": "More", "text": INVENTED.replace("ten", "five")})
        return out

    model = FakeChatModel(responders={"SummaryDraftOut": draft})
    run = await run_loop(tmp_path, _spec(make_spec, run={"cache": False}), model)

    first = run.reports[0]
    assert not first.baseline_met and first.scores["faithfulness"] < 0.8
    summary = run.values["summary"]
    reasons = " ".join(summary.history[0]["reasons"])
    assert "not supported by the sources" in reasons and "free house" in reasons
    assert run.reports[-1].baseline_met and INVENTED not in (run.bundle / "summary.md").read_text()


async def test_rejected_after_max_iterations_with_reasons(tmp_path: Path, make_spec: Any) -> None:
    model = FakeChatModel(
        responders={"SummaryFitOut": lambda r: {"reason": "far too long", "score": 1}}
    )
    run = await run_loop(tmp_path, _spec(make_spec, run={"max_iterations": 2}), model)

    assert [r.baseline_met for r in run.reports] == [False, False]
    assert run.values["summary"].status == "rejected"
    assert not (run.bundle / "summary.md").exists()
    text = (run.bundle / "summary_rejected.md").read_text()
    assert text.startswith("> **Not accepted**") and "far too long" in text
    metadata = run.json("metadata.json")
    assert metadata["baseline_met"] is False
    assert metadata["summary"]["status"] == "rejected" and metadata["summary"]["reasons"]


async def test_constraints_gate_the_summary(tmp_path: Path, make_spec: Any) -> None:
    def draft(request: FakeRequest) -> dict[str, Any]:
        out = default_response(request)
        if "<previous_summary>" in request.user:
            for section in out["sections"]:
                kept = [s for s in section["text"].split(". ") if "olicitor" not in s]
                section["text"] = ". ".join(kept)
        return out

    model = FakeChatModel(responders={"SummaryDraftOut": draft})
    spec = _spec(
        make_spec,
        constraints={
            "filter_out": [
                {"keyword": "solicitor"},
                {"topic": "pets and animals"},
                {"regex": "zebra", "applies_to": "question"},
            ]
        },
        run={"cache": False},
    )
    run = await run_loop(tmp_path, spec, model)

    first = run.reports[0]
    assert not first.baseline_met and any("keyword:solicitor" in s for s in first.shortfalls)
    assert run.reports[-1].baseline_met
    summary = run.values["summary"]
    assert "forbidden keyword" in " ".join(summary.history[0]["reasons"])
    assert "olicitor" not in (run.bundle / "summary.md").read_text()
    topic_calls = model.calls_for("TopicJudgeOut")
    assert len(topic_calls) == 2 and all("pets and animals" in c.user for c in topic_calls)


async def test_coverage_of_the_persona_needs(tmp_path: Path, make_spec: Any) -> None:
    judged: dict[str, int] = {}

    def coverage(request: FakeRequest) -> dict[str, Any]:
        need = request.tag("need")[0]
        judged[need] = judged.get(need, 0) + 1
        if need == "learn to sail":
            return {"reason": "the notes say nothing about sailing", "in_data": False, "covered": 1}
        if need == "count overtime pay" and judged[need] == 1:
            return {"reason": "overtime is not mentioned", "in_data": True, "covered": 1}
        return {"reason": "covered", "in_data": True, "covered": 5}

    model = FakeChatModel(responders={"NeedCoverageOut": coverage})
    persona = {
        "goals": ["buy a flat"],
        "pain_points": ["count overtime pay"],
        "interests": ["learn to sail"],
    }
    run = await run_loop(tmp_path, _spec(make_spec, persona=persona, run={"cache": False}), model)

    assert [r.baseline_met for r in run.reports] == [False, True]
    assert run.reports[0].scores["coverage"] == 0.5  # (0 + 1) / 2 needs in the data
    writes = model.calls_for("SummaryDraftOut")
    assert "count overtime pay (overtime is not mentioned)" in writes[1].user
    summary = run.json("metadata.json")["summary"]
    assert summary["needs_not_in_data"] == ["learn to sail"]
    assert set(summary["needs_covered"]) == {"buy a flat", "count overtime pay"}
    assert any("learn to sail" in e.message for e in run.values["events"])


async def test_many_notes_are_merged_before_writing(tmp_path: Path, make_spec: Any) -> None:
    goal = {"params": {"map_chars": 120, "reduce_max_notes": 3, "max_notes": 2}}
    model = FakeChatModel()
    run = await run_loop(tmp_path, _spec(make_spec, goal=goal), model)

    assert run.reports[-1].baseline_met
    notes = run.values["summary_notes"]
    assert any(n.level >= 1 for n in notes) and len(model.calls_for("SummaryNotesOut")) > 4
    used = [n for n in notes if n.used]
    assert 0 < len(used) <= 3 and all(n.level >= 1 and n.spans for n in used)
    assert len(run.values["summary"].claims) > 0


async def test_ungrounded_notes_are_reported_not_summarized(tmp_path: Path, make_spec: Any) -> None:
    def notes(request: FakeRequest) -> dict[str, Any]:
        out = default_response(request)
        out["notes"].append({"point": "Houses are free", "quote": INVENTED})
        return out

    model = FakeChatModel(responders={"SummaryNotesOut": notes})
    run = await run_loop(tmp_path, _spec(make_spec), model)

    record = run.json("summary.json")
    invented = [n for n in record["notes"] if n["quote"] == INVENTED]
    assert len(invented) == 2 and not any(n["used"] or n["spans"] for n in invented)
    assert INVENTED not in model.calls_for("SummaryDraftOut")[0].user
    warnings = [e.message for e in run.values["events"] if e.level == "warning"]
    assert any("quote is not in the data" in w for w in warnings)
    assert run.json("metadata.json")["summary"]["notes_not_in_data"] == 2


async def test_no_usable_notes_rejects_with_a_reason(tmp_path: Path, make_spec: Any) -> None:
    model = FakeChatModel(responders={"SummaryNotesOut": lambda r: {"notes": []}})
    run = await run_loop(tmp_path, _spec(make_spec), model)

    assert len(run.reports) == 1 and not run.reports[0].baseline_met
    assert run.values["summary"].status == "rejected"
    assert "no note could be taken" in (run.bundle / "summary_rejected.md").read_text()
    assert not model.calls_for("SummaryDraftOut")


async def test_failed_writing_is_retried_then_reported(tmp_path: Path, make_spec: Any) -> None:
    def faults(request: FakeRequest) -> str | None:
        return "not json at all" if request.schema_name == "SummaryDraftOut" else None

    model = FakeChatModel(faults=faults)
    run = await run_loop(tmp_path, _spec(make_spec, run={"max_iterations": 2}), model)

    assert [r.baseline_met for r in run.reports] == [False, False]
    assert any("could not be generated" in s for s in run.reports[0].shortfalls)
    summary = run.values["summary"]
    assert summary.status == "rejected" and summary.attempts == 2
    assert "writing the summary failed" in summary.feedback[-1]


async def test_user_prompts_and_goal_are_recorded(tmp_path: Path, make_spec: Any) -> None:
    prompt = "Use British English spelling."
    model = FakeChatModel()
    spec = _spec(make_spec, goal={"prompts": [prompt]}, llm={"provider": "embedded"})
    run = await run_loop(tmp_path, spec, model)  # embedded prompt variants, fake model

    generation = model.calls_for("SummaryNotesOut") + model.calls_for("SummaryDraftOut")
    assert generation and all(prompt in c.user for c in generation)
    goal = run.json("goal.json")
    assert goal["user_prompts"] == [prompt] and goal["source"] == "library:summary"
    assert set(goal["prompts"]) == {"map", "combine", "reduce", "claims", "coverage", "persona_fit"}


async def test_user_goal_file_extending_summary(tmp_path: Path, make_spec: Any) -> None:
    goal_file = Path(__file__).resolve().parents[1] / "data" / "goals" / "brief_summary.yaml"
    model = FakeChatModel()
    run = await run_loop(tmp_path, make_spec(goal={"name": str(goal_file), "params": {}}), model)

    assert run.reports[-1].baseline_met
    assert "warm and reassuring tone" in model.calls_for("SummaryDraftOut")[0].messages[0].content
    assert len(run.values["summary"].sections) == 1
    assert run.json("goal.json")["extends"] == "summary"


async def test_verbatim_text_grounds_only_when_copied_word_for_word(
    tmp_path: Path, make_spec: Any
) -> None:
    def notes(request: FakeRequest) -> dict[str, Any]:
        out = default_response(request)
        for note in out["notes"]:
            note["quote"] = "see the text"  # a garbled quote; the point is the sentence
        return out

    changed = "Most lenders ask for a deposit of at least fifty percent of the property price."

    def claims(request: FakeRequest) -> dict[str, Any]:
        out = default_response(request)
        for claim in out["claims"]:
            claim["quote"] = ""
        out["claims"].append({"claim": changed, "quote": ""})
        return out

    model = FakeChatModel(responders={"SummaryNotesOut": notes, "ClaimsOut": claims})
    run = await run_loop(tmp_path, _spec(make_spec, run={"max_iterations": 1}), model)

    record = run.json("summary.json")
    assert record["notes"] and all(n["spans"] and n["used"] for n in record["notes"])
    assert all(n["quote"] == n["point"] for n in record["notes"])
    rows = run.lines("summary_claims.jsonl")
    number_changed = [r for r in rows if r["claim"] == changed]
    assert number_changed and not number_changed[0]["supported"]  # fuzzy is not enough
    assert all(r["supported"] for r in rows if r["claim"] != changed)
