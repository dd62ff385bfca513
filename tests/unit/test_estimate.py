from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from personagen.api import arun
from personagen.estimate import estimate_run
from personagen.llm.fake import FakeChatModel
from personagen.specfile import parse_spec


def test_estimate_scales_with_questions(make_spec: Any) -> None:
    small = estimate_run(
        parse_spec(make_spec(goal={"name": "qa", "params": {"num_questions": 5}})),
        characters=20_000,
        documents=2,
    )
    large = estimate_run(
        parse_spec(make_spec(goal={"name": "qa", "params": {"num_questions": 10}})),
        characters=20_000,
        documents=2,
    )
    answers = {s.stage: s.calls for s in small.first_pass}["answer"]
    assert answers == 5
    assert {s.stage: s.calls for s in large.first_pass}["answer"] == 10
    assert 1.8 < large.low["total_tokens"] / small.low["total_tokens"] < 2.2
    assert small.high["calls"] > small.low["calls"]


async def test_low_estimate_is_close_to_a_real_first_pass(tmp_path: Path, make_spec: Any) -> None:
    spec_data = make_spec(run={"max_iterations": 1})
    spec = parse_spec(spec_data)

    def generative(request: Any) -> dict[str, Any]:
        from personagen.llm.fake import default_response

        out = default_response(request)  # a non-extractive answer, so faithfulness is judged
        if out["answerable"]:
            out["answer"] += " That should help."
        return out

    model = FakeChatModel(responders={"AnswerOut": generative})
    result = await arun(spec, chat_model=model, out_dir=tmp_path / "o", state_dir=tmp_path / "s")
    refs = json.loads((result.bundle_dir / "data_refs.json").read_text())
    guess = estimate_run(spec, characters=sum(r["chars"] for r in refs), documents=len(refs))
    assert model.calls  # the estimate itself made none: it ran before and needs no model
    assert abs(guess.low["calls"] - len(model.calls)) <= 0.35 * len(model.calls)


@pytest.mark.parametrize(
    "goal",
    [
        {"name": "summary"},
        {"name": "rewrite", "params": {"instruction": "Rewrite it as a checklist."}},
    ],
    ids=["summary", "rewrite"],
)
async def test_other_goals_low_estimate_is_close_to_a_real_first_pass(
    tmp_path: Path, goal: dict[str, Any]
) -> None:
    from ..conftest import EXAMPLE_SPEC

    data = {
        "persona": {
            "name": "Maya",
            "description": "A nurse buying a first home",
            "goals": ["buy a flat", "keep costs low"],
            "pain_points": ["night shifts"],
        },
        "goal": goal,
        "data": [{"path": str(EXAMPLE_SPEC.parent / "docs")}],
        "run": {"max_iterations": 1},
        "llm": {"provider": "fake"},
    }
    spec = parse_spec(data)
    model = FakeChatModel()
    result = await arun(spec, chat_model=model, out_dir=tmp_path / "o", state_dir=tmp_path / "s")
    assert result.status == "done"
    texts = [p.read_text() for p in sorted((EXAMPLE_SPEC.parent / "docs").iterdir())]
    guess = estimate_run(
        spec, characters=sum(len(t) for t in texts), documents=len(texts), texts=texts
    )
    assert guess.high["calls"] == guess.low["calls"]  # one pass: nothing to refine
    assert abs(guess.low["calls"] - len(model.calls)) <= 0.35 * len(model.calls), (
        guess.first_pass,
        len(model.calls),
    )
