"""Response cache, token budget, retries and repair: runs that lose nothing and cost no more."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from personagen.api import aresume, arun
from personagen.llm.client import TransientLLMError
from personagen.llm.fake import FakeChatModel, FakeRequest


def _metadata(result: Any) -> dict[str, Any]:
    return json.loads((result.bundle_dir / "metadata.json").read_text())


def _rows(result: Any) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (result.bundle_dir / "qa.jsonl").read_text().splitlines()]


async def test_rerun_of_same_spec_costs_zero_tokens(tmp_path: Path, make_spec: Any) -> None:
    spec = make_spec()
    kwargs = {"out_dir": tmp_path / "out", "state_dir": tmp_path / "state"}
    first = await arun(spec, chat_model=FakeChatModel(), **kwargs)
    model = FakeChatModel()
    second = await arun(spec, chat_model=model, **kwargs)

    assert model.calls == []  # every response came from the cache
    usage = _metadata(second)["usage"]["totals"]
    assert usage["total_tokens"] == 0
    assert (
        usage["cache_hits"]
        == usage["llm_calls"]
        == _metadata(first)["usage"]["totals"]["llm_calls"]
    )
    assert _rows(second) == _rows(first)


async def test_budget_stops_and_resume_completes_at_the_same_total(
    tmp_path: Path, make_spec: Any
) -> None:
    spec = make_spec(run={"max_concurrency": 1})
    free = await arun(
        spec, chat_model=FakeChatModel(), out_dir=tmp_path / "a", state_dir=tmp_path / "a-state"
    )
    total = _metadata(free)["usage"]["totals"]["total_tokens"]
    largest = max(c["input_tokens"] + c["output_tokens"] for c in _llm_calls(free))

    budget = total // 2
    kwargs = {"out_dir": tmp_path / "b", "state_dir": tmp_path / "b-state"}
    stopped = await arun(
        spec, chat_model=FakeChatModel(), run_id="budgeted", max_tokens=budget, **kwargs
    )
    assert stopped.status == "budget_exhausted"
    assert "token budget" in (stopped.reason or "")
    assert stopped.bundle_dir is None
    assert budget <= stopped.spent <= budget + largest  # at most one call over the budget

    resumed = await aresume("budgeted", chat_model=FakeChatModel(), max_tokens=10**9, **kwargs)
    assert resumed.status == "done"
    assert resumed.tokens == total
    assert _rows(resumed) == _rows(free)


def _llm_calls(result: Any) -> list[dict[str, Any]]:
    return [c for s in [_metadata(result)] for c in _per_call(s)]


def _per_call(metadata: dict[str, Any]) -> list[dict[str, Any]]:
    return metadata["llm_calls"]


async def test_faults_are_retried_and_repaired(tmp_path: Path, make_spec: Any) -> None:
    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    plan = {
        2: TimeoutError("read timed out"),
        4: openai.RateLimitError(
            "rate limited", response=httpx.Response(429, request=request), body=None
        ),
        6: "this is { not json",
        9: openai.InternalServerError(
            "boom", response=httpx.Response(503, request=request), body=None
        ),
    }

    def faults(req: FakeRequest) -> BaseException | str | None:
        return plan.get(req.index)

    spec = make_spec(run={"cache": False})
    result = await arun(
        spec,
        chat_model=FakeChatModel(faults=faults),
        out_dir=tmp_path / "out",
        state_dir=tmp_path / "state",
    )
    assert result.status == "done"
    totals = _metadata(result)["usage"]["totals"]
    assert totals["retries"] == 3
    assert totals["repairs"] == 1
    clean = await arun(
        spec,
        chat_model=FakeChatModel(),
        out_dir=tmp_path / "clean",
        state_dir=tmp_path / "clean-state",
    )
    assert _rows(result) == _rows(clean)


async def test_unrepairable_output_is_reported_on_the_item(tmp_path: Path, make_spec: Any) -> None:
    model = FakeChatModel(responders={"AnswerOut": lambda r: "I cannot answer in JSON, sorry."})
    result = await arun(
        make_spec(run={"cache": False, "max_iterations": 1}),
        chat_model=model,
        out_dir=tmp_path / "out",
        state_dir=tmp_path / "state",
    )
    # Nothing parsed at all: the run fails loudly (issue 15.7), and still reports every item.
    assert result.status == "failed" and not result.accepted
    rejected = [
        json.loads(x) for x in (result.bundle_dir / "rejected.jsonl").read_text().splitlines()
    ]
    assert len(rejected) == len(result.pairs) == 3
    assert all("could not parse AnswerOut" in " ".join(r["reasons"]) for r in rejected)
    warnings = _metadata(result)["warnings"]
    assert {w["item"] for w in warnings if "answering failed" in w["message"]} == set(result.pairs)


async def test_transient_error_exhausting_retries_fails_the_run_resumably(
    tmp_path: Path, make_spec: Any
) -> None:
    import pytest

    def always_down(req: FakeRequest) -> BaseException | None:
        return (
            TransientLLMError("503 service unavailable") if req.schema_name == "AnswerOut" else None
        )

    kwargs = {"out_dir": tmp_path / "out", "state_dir": tmp_path / "state"}
    with pytest.raises(TransientLLMError):
        await arun(
            make_spec(), chat_model=FakeChatModel(faults=always_down), run_id="flaky", **kwargs
        )
    model = FakeChatModel()
    resumed = await aresume("flaky", chat_model=model, **kwargs)
    assert resumed.status == "done"
    assert model.calls_for("QuestionsOut") == []  # finished nodes are not redone


def test_closing_a_run_context_ends_its_background_work_and_stores(
    tmp_path: Path, make_spec: Any
) -> None:
    import sqlite3

    from personagen.api import _Session
    from personagen.llm.cache import ResponseCache
    from personagen.specfile import parse_spec

    session = _Session(tmp_path / "out", tmp_path / "state", None, FakeChatModel(), None, None)
    context = session.context("r1", parse_spec(make_spec()), max_tokens=None)
    cache = context.llm.chat.cache
    assert isinstance(cache, ResponseCache)
    context.close()
    assert context.background_stop.is_set()
    with pytest.raises(RuntimeError, match="closed"):
        context.store.get_text("x")
    with pytest.raises(sqlite3.ProgrammingError):
        cache.lookup("prompt", "llm")
    assert context.usage_log is not None
    with pytest.raises(sqlite3.ProgrammingError):
        context.usage_log.totals("r1")
