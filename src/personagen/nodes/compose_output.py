"""Node: close the loop (failing pairs become rejected, with reasons) and write the bundle."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from langgraph.runtime import Runtime

from personagen.evaluators.recommendations import recommend
from personagen.graph.context import RunContext
from personagen.nodes._instrument import instrumented
from personagen.state.graph import State
from personagen.state.metadata import Event
from personagen.store.bundle import base_metadata, usage_summary, write_bundle
from personagen.store.goal_export import write_goal_outputs
from personagen.store.rag_export import write_rag_bundle
from personagen.store.report import write_report


@instrumented("compose_output")
async def compose_output(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Write qa.jsonl, rejected.jsonl, qa_finetune.jsonl, metadata.json and the inputs."""
    ctx, goal, spec = runtime.context, state["goal"], state["spec"]
    rejected = {
        p.id: p.model_copy(update={"status": "rejected"})
        for p in state.get("pairs", {}).values()
        if p.status == "failing"
    }
    pairs = {**state.get("pairs", {}), **rejected}
    reports = state.get("reports", [])
    events: list[Event] = []
    if reports and not reports[-1].baseline_met:
        events.append(
            Event(
                level="warning",
                stage="decide",
                message=f"baseline not met after {state['iteration']} of "
                f"{spec.run.max_iterations} iteration(s): " + "; ".join(reports[-1].shortfalls),
            )
        )
    documents = state["documents"]
    chunks = ctx.store.chunks(
        [d.id for d in documents],
        chunk_size=int(goal.param("chunk_size")),
        chunk_overlap=int(goal.param("chunk_overlap")),
        splitter="recursive",
    )
    chunk_counts = Counter(c.doc_id for c in chunks)
    data_refs = [
        {**d.model_dump(mode="json"), "sha256": d.id, "chunks": chunk_counts.get(d.id, 0)}
        for d in documents
    ]
    all_events = [*state.get("events", []), *events]
    statuses = Counter(p.status for p in pairs.values())
    metadata = base_metadata(dict(state), model_name=ctx.llm.model_name) | {
        "status": "done",
        "usage": usage_summary(
            state.get("llm_calls", []),
            state.get("stages", []),
            spent=ctx.usage_log.totals(state["run_id"]) if ctx.usage_log else None,
        ),
        "stages": [s.model_dump() for s in state.get("stages", [])],
        "llm_calls": [c.model_dump() for c in state.get("llm_calls", [])],
        "scores_per_iteration": [r.model_dump() for r in reports],
        "final_scores": reports[-1].scores if reports else {},
        "baseline": goal.baseline,
        "baseline_met": bool(reports and reports[-1].baseline_met),
        "counts": {
            "questions": len(pairs),
            "custom_questions": sum(1 for p in pairs.values() if p.origin == "custom"),
            "accepted": statuses["accepted"],
            "rejected": statuses["rejected"],
            "unanswerable": statuses["unanswerable"],
            "duplicates_removed": len(state.get("removed_duplicates", [])),
            "questions_removed": sum(
                1 for r in state.get("removed_questions", []) if r.get("action") == "removed"
            ),
            "unverified": statuses["unverified"],
            "rejected_by_reason": dict(
                Counter(c for p in rejected.values() for c in p.failed_checks).most_common()
            ),
            "unverified_by_reason": dict(
                Counter(
                    c for p in pairs.values() if p.status == "unverified" for c in p.failed_checks
                ).most_common()
            ),
        },
        "judge_selftest": _selftest_metadata(state),
        "duplicates_removed": state.get("removed_duplicates", []),
        "questions_removed": state.get("removed_questions", []),
        "hooks": [c.model_dump() for c in state.get("hook_log", [])],
        "warnings": [e.model_dump() for e in all_events if e.level == "warning"],
        "errors": [e.model_dump() for e in all_events if e.level == "error"],
        "recommendations": recommend(
            persona=state["persona"],
            pairs=list(pairs.values()),
            reports=reports,
            baseline=goal.baseline,
            max_iterations=spec.run.max_iterations,
            model_name=ctx.llm.model_name,
            chunks=chunks,
            data_refs=data_refs,
            selftest=state.get("judge_selftest"),
        ),
    }
    directory = ctx.out_dir / state["run_id"]
    goal_files, goal_metadata = await asyncio.to_thread(
        write_goal_outputs, directory, dict(state), documents, ctx.store.get_text
    )
    metadata |= goal_metadata | {"goal_files": sorted(goal_files)}
    system_prompt = (
        f"You answer questions for {state['persona'].short()}. "
        f"Answer in language '{state['persona'].language}' at their level."
    )
    rag = state.get("rag")
    if rag is not None:
        metadata["rag"] = {k: rag.get(k) for k in ("status", "reason", "chosen", "objective")}
    files = await asyncio.to_thread(
        write_bundle,
        directory,
        state={**state, "pairs": pairs},
        documents=documents,
        chunk_counts=dict(chunk_counts),
        metadata=metadata,
        finetune_system_prompt=system_prompt,
    )
    if rag is not None:
        files |= await asyncio.to_thread(
            write_rag_bundle, directory, rag, documents, ctx.store.get_text, list(pairs.values())
        )
    files["report.html"] = str(
        await asyncio.to_thread(
            write_report,
            directory,
            metadata=metadata,
            pairs=[p for p in pairs.values() if p.status in ("accepted", "unanswerable")],
            rejected=[p for p in pairs.values() if p.status in ("rejected", "unverified")],
            persona=state["persona"].model_dump(mode="json"),
            goal=goal.model_dump(mode="json"),
            constraints=spec.constraints.model_dump(mode="json"),
            data_refs=data_refs,
        )
    )
    return {"pairs": rejected, "events": events, "bundle_dir": str(directory), "status": "done"}


def _selftest_metadata(state: State) -> dict[str, Any] | None:
    """The judges' self-test with the tokens its probes cost (from its stage records)."""
    selftest = state.get("judge_selftest")
    if selftest is None:
        return None
    stages = [s for s in state.get("stages", []) if s.node == "selftest_judges"]
    tokens = sum(s.input_tokens + s.output_tokens for s in stages)
    return selftest.model_copy(update={"tokens": tokens}).model_dump(mode="json")
