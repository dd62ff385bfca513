"""A test graph for the summary and rewrite loops, and a driver with the scripted fake model.

It is the production graph's head (compose_persona -> resolve_goal -> load_data), the
`route_goal` router, both loops from `personagen.graph.loops`, `review_output`, and a
compose-output stand-in that writes what `compose_output` writes for these loops. Runs are
checkpointed in SQLite (`:memory:`) with the production serializer.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

import personagen.llm.fake_goals  # noqa: F401  (registers the loops' default fake responses)
from personagen.data.chunk_store import ChunkStore
from personagen.graph.checkpoint import open_checkpointer
from personagen.graph.context import RunContext
from personagen.graph.loops import add_rewrite_loop, add_summary_loop, route_goal
from personagen.llm.factory import make_llm_client
from personagen.llm.fake import FakeChatModel
from personagen.nodes._goal_common import LoopState
from personagen.nodes.compose_persona import compose_persona
from personagen.nodes.load_data import load_data
from personagen.nodes.resolve_goal import resolve_goal
from personagen.nodes.review_output import review_output
from personagen.specfile import parse_spec
from personagen.state.graph import InputState, State
from personagen.state.metadata import IterationReport
from personagen.state.spec import RunSpec
from personagen.store.bundle import write_json
from personagen.store.goal_export import write_goal_outputs


async def _qa_not_here(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    raise AssertionError("the test graph has no Q/A loop")


async def _compose(state: LoopState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    directory = ctx.out_dir / state["run_id"]
    directory.mkdir(parents=True, exist_ok=True)
    write_json(directory / "goal.json", state["goal"])
    write_json(directory / "persona.json", state["persona"])
    files, extra = write_goal_outputs(
        directory, dict(state), state["documents"], ctx.store.get_text
    )
    reports = state.get("reports", [])
    metadata = {
        "run_id": state["run_id"],
        "iterations": state["iteration"],
        "scores_per_iteration": [r.model_dump() for r in reports],
        "baseline": state["goal"].baseline,
        "baseline_met": bool(reports and reports[-1].baseline_met),
        **extra,
        "warnings": [e.model_dump() for e in state.get("events", []) if e.level == "warning"],
        "files": sorted([*files, "goal.json", "persona.json", "metadata.json"]),
    }
    write_json(directory / "metadata.json", metadata)
    return {"bundle_dir": str(directory), "status": "done"}


def build_test_graph() -> StateGraph:
    """The graph head, both goal loops, review_output and the compose stand-in."""
    builder = StateGraph(LoopState, context_schema=RunContext, input_schema=InputState)
    builder.add_node("compose_persona", compose_persona)
    builder.add_node("resolve_goal", resolve_goal)
    builder.add_node("load_data", load_data)
    builder.add_node("generate_questions", _qa_not_here)
    builder.add_node("review_output", review_output)
    builder.add_node("compose_output", _compose)
    builder.add_edge(START, "compose_persona")
    builder.add_edge("compose_persona", "resolve_goal")
    builder.add_edge("resolve_goal", "load_data")
    builder.add_conditional_edges(
        "load_data", route_goal, ["generate_questions", "summarize", "plan_rewrites"]
    )
    add_summary_loop(builder)
    add_rewrite_loop(builder)
    builder.add_edge("generate_questions", END)
    builder.add_edge("review_output", "compose_output")
    builder.add_edge("compose_output", END)
    return builder


@dataclass
class LoopRun:
    """What a test run produced."""

    values: dict[str, Any]
    bundle: Path

    @property
    def reports(self) -> list[IterationReport]:
        return list(self.values.get("reports", []))

    def lines(self, name: str) -> list[dict[str, Any]]:
        text = (self.bundle / name).read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def json(self, name: str) -> Any:
        return json.loads((self.bundle / name).read_text(encoding="utf-8"))


async def run_loop(
    tmp_path: Path, spec: dict[str, Any] | RunSpec, model: FakeChatModel | None
) -> LoopRun:
    """Run `spec` through the test graph with `model` (None: the spec's provider)."""
    parsed = spec if isinstance(spec, RunSpec) else parse_spec(spec)
    client = make_llm_client(parsed.llm, chat_model=model)
    store = ChunkStore(tmp_path / "chunks.sqlite")
    context = RunContext(
        llm=client,
        store=store,
        out_dir=tmp_path / "out",
        max_concurrency=parsed.run.max_concurrency,
    )
    run_id = f"test-{time.time_ns()}"
    config: dict[str, Any] = {
        "configurable": {"thread_id": run_id},
        "recursion_limit": 20 + 8 * parsed.run.max_iterations,
    }
    try:
        async with open_checkpointer(":memory:") as saver:
            graph = build_test_graph().compile(checkpointer=saver, name="goal-loops-test")
            await graph.ainvoke({"spec": parsed, "run_id": run_id}, config, context=context)
            snapshot = await graph.aget_state(config)
    finally:
        store.close()
    values = dict(snapshot.values)
    return LoopRun(values=values, bundle=Path(values["bundle_dir"]))
