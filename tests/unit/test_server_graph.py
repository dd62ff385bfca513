"""The served graph takes what the LangGraph server sends: JSON input and `context={}`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from personagen.graph.server import graph


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("PERSONAGEN_OUT_DIR", str(tmp_path / "out"))
    monkeypatch.setenv("PERSONAGEN_STATE_DIR", str(tmp_path / "state"))
    return graph.copy(update={"checkpointer": InMemorySaver()})  # as the server does


async def test_the_servers_empty_context_runs(served: Any, make_spec: Any, tmp_path: Path) -> None:
    spec = json.loads(json.dumps(make_spec(run={"max_iterations": 1})))
    out = await served.ainvoke({"spec": spec}, {"configurable": {"thread_id": "srv-1"}}, context={})
    assert out["status"] == "done" and (tmp_path / "out" / "srv-1" / "qa.jsonl").is_file()


async def test_a_json_context_with_keys_is_refused_by_name(served: Any, make_spec: Any) -> None:
    spec = json.loads(json.dumps(make_spec()))
    with pytest.raises(ValueError, match=r"\['out_dir'\]"):
        await served.ainvoke(
            {"spec": spec}, {"configurable": {"thread_id": "srv-2"}}, context={"out_dir": "x"}
        )
