"""A user's checkpointer logs no "Deserializing unregistered type" for PersonaGen's state."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.event_hooks import register_serde_event_listener
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.types import Command

import personagen
from personagen.graph.builder import compile_graph
from personagen.graph.checkpoint import serializer, with_state_types


async def _pause_and_resume(graph: Any, spec: dict[str, Any], thread: str) -> dict[str, Any]:
    config = {"configurable": {"thread_id": thread}}
    paused = await graph.ainvoke({"spec": spec}, config)
    assert paused["status"] == "running"  # waiting at the questions review
    # Resuming reads every state value back from the checkpointer.
    return await graph.ainvoke(Command(resume={"approve_all": True}), config)


async def test_compile_graph_registers_every_state_type(
    tmp_path: Path, make_spec: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERSONAGEN_OUT_DIR", str(tmp_path / "out"))
    monkeypatch.setenv("PERSONAGEN_STATE_DIR", str(tmp_path / "state"))
    spec = json.loads(json.dumps(make_spec(run={"review": ["questions"], "max_iterations": 1})))
    events: list[dict[str, Any]] = []
    unregister = register_serde_event_listener(lambda e: events.append(dict(e)))
    try:
        # Control: LangGraph's stock serializer flags PersonaGen's types (once logged per
        # process, but every time as an event).
        plain = personagen.build_graph().compile(checkpointer=InMemorySaver())
        out = await _pause_and_resume(plain, spec, "plain")
        assert out["status"] == "done"
        flagged = {(e["module"], e["name"]) for e in events}
        assert ("personagen.state.spec", "RunSpec") in flagged
        events.clear()

        for thread, graph in [
            ("compiled", compile_graph(InMemorySaver())),
            ("explicit", personagen.build_graph().compile(InMemorySaver(serde=serializer()))),
        ]:
            out = await _pause_and_resume(graph, spec, thread)
            assert out["status"] == "done" and out["pairs"]
            assert events == [], thread
    finally:
        unregister()


def test_a_serializer_the_caller_chose_is_kept() -> None:
    class Mine(JsonPlusSerializer):
        pass

    saver = InMemorySaver(serde=Mine())
    assert with_state_types(saver) is saver
    stock = InMemorySaver()
    given = with_state_types(stock)
    assert given is not stock and stock.serde is not given.serde
    assert given.storage is stock.storage  # the same saver's data, a registered serializer
