"""The runtime examples: an ETL batch and a serverless handler cut off by its time limit."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from personagen.llm.fake import FakeChatModel

from ..conftest import REPO


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO / "examples" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_etl_batch_personalizes_every_file_for_every_persona(tmp_path: Path) -> None:
    etl = _load("etl_batch")
    files = sorted((REPO / "examples" / "home-buying" / "docs").glob("*.md"))
    personas = yaml.safe_load((REPO / "examples" / "personas.yaml").read_text())
    kwargs = {
        "out_dir": tmp_path / "out",
        "state_dir": tmp_path / "state",
        "provider": "fake",
        "chat_model": FakeChatModel(),
    }
    rows = await etl.personalize(files, personas, **kwargs)
    assert len(rows) == len(files) * len(personas) == 6
    assert all(r["status"] == "done" and Path(r["bundle_dir"], "qa.jsonl").is_file() for r in rows)
    assert len({r["run_id"] for r in rows}) == 6
    model = FakeChatModel()
    again = await etl.personalize(files, personas, **{**kwargs, "chat_model": model})
    assert model.calls == [] and [r["bundle_dir"] for r in again] == [r["bundle_dir"] for r in rows]


def test_serverless_handler_resumes_after_time_limit(tmp_path: Path, make_spec: Any) -> None:
    serverless = _load("serverless_handler")
    event = {
        "run_id": "fn-1",
        "spec": make_spec(),
        "state_dir": str(tmp_path / "state"),
        "out_dir": str(tmp_path / "out"),
        "time_limit_s": 1.2,
    }
    reference = FakeChatModel()
    full = serverless.handler(
        {**event, "run_id": "ref", "time_limit_s": 600, "state_dir": str(tmp_path / "ref")},
        chat_model=reference,
    )
    assert full["status"] == "done"

    first_model = FakeChatModel(latency=0.5)
    first = serverless.handler(event, chat_model=first_model)
    assert first == {"status": "in_progress", "run_id": "fn-1"}
    assert first_model.calls_for("QuestionsOut")  # got past question generation
    second_model = FakeChatModel()
    second = serverless.handler({**event, "time_limit_s": 600}, chat_model=second_model)
    assert second["status"] == "done" and second["accepted"] == full["accepted"]
    assert second_model.calls_for("QuestionsOut") == []  # finished work is not redone
    redone = len(first_model.calls) + len(second_model.calls) - len(reference.calls)
    assert 0 <= redone <= 4  # at most the calls cut off in flight (max_concurrency)
    rows = [json.loads(x) for x in Path(second["bundle_dir"], "qa.jsonl").read_text().splitlines()]
    ref_rows = [
        json.loads(x) for x in Path(full["bundle_dir"], "qa.jsonl").read_text().splitlines()
    ]
    assert sorted(r["question"] for r in rows) == sorted(r["question"] for r in ref_rows)
