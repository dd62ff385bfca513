"""The rewrite goals (generic, checklist, glossary, a user's file) end to end on the fake model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from personagen.data.chunk_store import ChunkStore
from personagen.errors import SpecError
from personagen.llm.fake import FakeChatModel, FakeRequest, default_response

from .goal_graph import run_loop

GOALS = Path(__file__).resolve().parents[1] / "data" / "goals"
INVENTED = "- [ ] Ask the council for the free nurse house worth ten thousand pounds."


def _spec(make_spec: Any, name: str, **overrides: Any) -> dict[str, Any]:
    goal = {"name": name, "params": {}, **overrides.pop("goal", {})}
    return make_spec(goal=goal, **overrides)


def _unit(request: FakeRequest) -> str:
    return request.tag("text")[0] if request.tag("text") else ""


@pytest.mark.parametrize("name", ["checklist", "glossary"])
async def test_library_rewrite_goals_run_end_to_end(
    tmp_path: Path, make_spec: Any, name: str
) -> None:
    model = FakeChatModel()
    run = await run_loop(tmp_path, _spec(make_spec, name), model)

    assert [r.baseline_met for r in run.reports] == [True]
    items = run.values["rewrites"]
    assert len(items) == 2 and all(i.status == "accepted" for i in items.values())  # 2 sections
    rows = run.lines("rewrites.jsonl")
    assert [r["unit_index"] for r in rows] == [0, 1]
    store = ChunkStore(tmp_path / "chunks.sqlite")
    try:
        for row in rows:
            text = store.get_text(row["doc_id"])
            assert row["source_text"] == text[row["start"] : row["end"]]
            assert row["claims"] and all(c["supported"] for c in row["claims"])
            for claim in row["claims"]:
                for span in claim["spans"]:
                    assert text[span["start"] : span["end"]] == span["text"]
                    assert row["start"] <= span["start"] < span["end"] <= row["end"]
            assert set(row["scores"]) >= {"faithfulness", "criteria", "persona_fit"}
    finally:
        store.close()
    assert run.lines("rewrites_rejected.jsonl") == []
    rewritten = (run.bundle / "rewritten.md").read_text()
    assert rewritten.count("<!-- source:") == 2 and "- Most lenders ask" in rewritten
    instruction = run.json("goal.json")["params"]["instruction"]
    assert all(instruction in c.user for c in model.calls_for("RewriteOut"))
    metadata = run.json("metadata.json")
    assert metadata["rewrites"]["accepted"] == 2 and metadata["baseline_met"] is True


async def test_only_failing_units_are_rewritten(tmp_path: Path, make_spec: Any) -> None:
    judged: dict[str, int] = {}

    def judge(request: FakeRequest) -> dict[str, Any]:
        out = default_response(request)
        source = request.tag("source_text")[0]
        judged[source] = judged.get(source, 0) + 1
        if "Deposits" in source and judged[source] == 1:
            out["criteria"][1] |= {"score": 2, "reason": "misses the overtime rule"}
        return out

    model = FakeChatModel(responders={"CriteriaJudgeOut": judge})
    params = {
        "instruction": "Rewrite each section as a checklist for this persona.",
        "criteria": ["Every item is an action.", "Nothing important is missing."],
    }
    spec = _spec(make_spec, "rewrite", goal={"params": params}, run={"cache": False})
    run = await run_loop(tmp_path, spec, model)

    assert [r.baseline_met for r in run.reports] == [False, True]
    assert run.reports[0].failing == 1 and run.reports[0].accepted == 1
    assert any("criteria" in s for s in run.reports[0].shortfalls)
    rewrites = model.calls_for("RewriteOut")
    assert len(rewrites) == 2 + 1
    again = [c for c in rewrites if "<previous_output>" in c.user]
    assert len(again) == 1 and "Deposits" in _unit(again[0])
    assert "nothing_important_is 2/5 (misses the overtime rule)" in again[0].user
    items = sorted(run.values["rewrites"].values(), key=lambda i: i.unit_index)
    assert all(i.status == "accepted" for i in items)
    reworked = [i for i in items if i.history]
    assert len(reworked) == 1 and reworked[0].attempts == 2
    assert "misses the overtime rule" in " ".join(reworked[0].history[0]["reasons"])
    assert reworked[0].scores["criterion:nothing_important_is"] == 0.75


async def test_invented_content_fails_faithfulness(tmp_path: Path, make_spec: Any) -> None:
    def rewrite(request: FakeRequest) -> dict[str, Any]:
        out = default_response(request)
        if "<previous_output>" not in request.user:
            out["parts"] += [INVENTED, INVENTED.replace("ten", "five")]
        return out

    model = FakeChatModel(responders={"RewriteOut": rewrite})
    run = await run_loop(tmp_path, _spec(make_spec, "checklist", run={"cache": False}), model)

    first = run.reports[0]
    assert not first.baseline_met and first.scores["faithfulness"] < 0.8
    assert run.reports[-1].baseline_met
    for item in run.values["rewrites"].values():
        assert "not supported by the sources" in " ".join(item.history[0]["reasons"])
        assert "free nurse house" not in item.output
        assert item.claims and all(c.supported for c in item.claims)


async def test_failing_units_end_rejected_with_reasons(tmp_path: Path, make_spec: Any) -> None:
    def judge(request: FakeRequest) -> dict[str, Any]:
        out = default_response(request)
        for verdict in out["criteria"]:
            verdict |= {"score": 2, "reason": "not a checklist"}
        return out

    model = FakeChatModel(responders={"CriteriaJudgeOut": judge})
    run = await run_loop(tmp_path, _spec(make_spec, "checklist"), model)

    assert [r.baseline_met for r in run.reports] == [False, False]
    assert all(i.status == "rejected" for i in run.values["rewrites"].values())
    rejected = run.lines("rewrites_rejected.jsonl")
    assert len(rejected) == 2 and run.lines("rewrites.jsonl") == []
    assert all(any("not a checklist" in r for r in row["reasons"]) for row in rejected)
    rewritten = (run.bundle / "rewritten.md").read_text()
    assert rewritten.count(": rejected: criteria") == 2
    metadata = run.json("metadata.json")
    assert metadata["rewrites"]["rejected"] == 2 and metadata["baseline_met"] is False


async def test_not_applicable_units_are_kept_and_counted(tmp_path: Path, make_spec: Any) -> None:
    def rewrite(request: FakeRequest) -> dict[str, Any] | None:
        if "Costs" in _unit(request):
            return {"applicable": False, "parts": []}
        return None

    model = FakeChatModel(responders={"RewriteOut": rewrite})
    run = await run_loop(tmp_path, _spec(make_spec, "glossary"), model)

    report = run.reports[-1]
    assert report.baseline_met and report.accepted == 1 and report.unanswerable == 1
    rows = {r["status"]: r for r in run.lines("rewrites.jsonl")}
    assert set(rows) == {"accepted", "not_applicable"}
    assert rows["not_applicable"]["applicable"] is False
    assert len(model.calls_for("CriteriaJudgeOut")) == 1  # a skipped unit is not judged
    assert "does not apply" in (run.bundle / "rewritten.md").read_text()


async def test_generation_failure_is_retried_next_pass(tmp_path: Path, make_spec: Any) -> None:
    seen: list[str] = []

    def faults(request: FakeRequest) -> str | None:
        if request.schema_name != "RewriteOut" or "Costs" not in _unit(request):
            return None
        seen.append("x")
        return "{not json" if len(seen) <= 2 else None  # both parse attempts of pass 1 fail

    model = FakeChatModel(faults=faults)
    run = await run_loop(tmp_path, _spec(make_spec, "checklist", run={"cache": False}), model)

    assert [r.baseline_met for r in run.reports] == [False, True]
    assert any("could not be generated" in s for s in run.reports[0].shortfalls)
    assert any("rewriting failed" in e.message for e in run.values["events"])
    assert all(i.status == "accepted" for i in run.values["rewrites"].values())


async def test_units_limits_and_kinds(tmp_path: Path, make_spec: Any) -> None:
    model = FakeChatModel()
    goal = {"params": {"unit": "chunk", "unit_chars": 200, "max_units": 3}}
    run = await run_loop(tmp_path, _spec(make_spec, "checklist", goal=goal), model)

    items = run.values["rewrites"]
    assert len(items) == 3 and len(model.calls_for("RewriteOut")) == 3
    assert all(i.end - i.start <= 200 for i in items.values())
    warnings = [e.message for e in run.values["events"] if e.level == "warning"]
    assert any("past max_units (3) are not rewritten" in w for w in warnings)

    goal = {"params": {"unit": "document", "unit_chars": 200}}
    run = await run_loop(tmp_path / "doc", _spec(make_spec, "checklist", goal=goal), model)
    infos = [e.message for e in run.values["events"] if e.level == "info"]
    assert any("longer than unit_chars (200)" in m for m in infos)


async def test_user_prompts_reach_rewrite_prompts(tmp_path: Path, make_spec: Any) -> None:
    prompt = "Address the reader as 'you'."
    model = FakeChatModel()
    spec = _spec(make_spec, "glossary", goal={"prompts": [prompt]}, llm={"provider": "embedded"})
    run = await run_loop(tmp_path, spec, model)

    calls = model.calls_for("RewriteOut")
    assert calls and all(prompt in c.user for c in calls)
    goal = run.json("goal.json")
    assert goal["user_prompts"] == [prompt] and goal["extends"] == "rewrite"
    assert goal["params"]["criteria"][0]["name"] == "right_terms"


@pytest.mark.parametrize("file_name", ["shift_checklist.yaml", "plain_rewrite.yaml"])
async def test_user_goal_files_run_end_to_end(
    tmp_path: Path, make_spec: Any, file_name: str
) -> None:
    model = FakeChatModel()
    spec = make_spec(goal={"name": str(GOALS / file_name), "params": {}})
    run = await run_loop(tmp_path, spec, model)

    assert run.reports[-1].baseline_met
    assert run.json("goal.json")["source"] == str(GOALS / file_name)
    criteria = [c["name"] for c in run.json("goal.json")["params"]["criteria"]]
    judge = model.calls_for("CriteriaJudgeOut")[0].user
    assert all(f'<criterion name="{name}">' in judge for name in criteria)
    assert run.lines("rewrites.jsonl")


async def test_rewrite_without_instruction_fails_clearly(tmp_path: Path, make_spec: Any) -> None:
    with pytest.raises(SpecError, match="goal.params.instruction: this goal needs an instruction"):
        await run_loop(tmp_path, _spec(make_spec, "rewrite"), FakeChatModel())
