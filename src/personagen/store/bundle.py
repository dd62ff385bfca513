"""The output bundle: tuned data, persona, goal, constraints, data references and metadata."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

import personagen
from personagen.state.documents import DocumentRef
from personagen.state.items import QAPair
from personagen.state.metadata import LLMCall, StageRun


def _dump(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_dump(v) for v in value]
    return value


def write_json(path: Path, value: Any) -> None:
    """Write pretty JSON atomically (a reader never sees half a file)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_dump(value), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def write_jsonl(path: Path, rows: Iterable[Any]) -> int:
    """Write JSON lines atomically; return the number of rows."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    count = 0
    with tmp.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(_dump(row), ensure_ascii=False) + "\n")
            count += 1
    tmp.replace(path)
    return count


def qa_row(pair: QAPair, sources: dict[str, str]) -> dict[str, Any]:
    """One line of qa.jsonl / rejected.jsonl."""
    return {
        "id": pair.id,
        "question": pair.question,
        "answer": pair.answer,
        "answerable": pair.answerable,
        "origin": pair.origin,
        "status": pair.status,
        "contexts": [
            {
                "chunk_id": c.chunk_id,
                "doc_id": c.doc_id,
                "source": sources.get(c.doc_id),
                "start": c.start,
                "end": c.end,
                "score": c.score,
                "text": c.text,
            }
            for c in pair.contexts
        ],
        "spans": [
            {
                "doc_id": s.doc_id,
                "source": sources.get(s.doc_id),
                "start": s.start,
                "end": s.end,
                "text": s.text,
            }
            for s in pair.spans
        ],
        "scores": pair.scores,
        "judge_reasons": pair.reasons,
        "violations": [v.model_dump(mode="json") for v in pair.violations],
        "reasons": pair.feedback,
        "failed_checks": pair.failed_checks,
        "iteration": pair.iteration,
        "answer_attempts": pair.answer_attempts,
        "question_attempts": pair.question_attempts,
        "history": pair.history,
    }


def finetune_row(pair: QAPair, system_prompt: str) -> dict[str, Any]:
    """A chat-format example (OpenAI fine-tuning / eval-set JSONL).

    Only `messages`, as OpenAI's chat fine-tuning format has it; tools that validate lines
    strictly refuse other keys (the pair's id and scores are in qa.jsonl).
    """
    return {
        "messages": [
            {"role": "system", "content": system_prompt},
            {"role": "user", "content": pair.question},
            {"role": "assistant", "content": pair.answer},
        ]
    }


def usage_summary(
    calls: list[LLMCall], stages: list[StageRun], *, spent: dict[str, int] | None = None
) -> dict[str, Any]:
    """Tokens, calls and seconds per node, per model and per iteration.

    `totals` is what was really spent (`spent`, from the durable usage log, which also counts
    work lost to a crash or a budget stop); the breakdowns cover the work that was saved.
    """
    per_node: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for stage in stages:
        row = per_node[stage.node]
        row["runs"] += 1
        row["seconds"] += stage.seconds
        row["llm_calls"] += stage.llm_calls
        row["input_tokens"] += stage.input_tokens
        row["output_tokens"] += stage.output_tokens
        row["cache_hits"] += stage.cache_hits
        row["retries"] += stage.retries
        row["repairs"] += stage.repairs
    per_model: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for call in calls:
        row = per_model[call.model]
        row["calls"] += 1
        row["input_tokens"] += call.input_tokens
        row["output_tokens"] += call.output_tokens
        row["seconds"] += call.seconds
        row["cache_hits"] += int(call.cached)
    per_iteration: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for stage in stages:
        row = per_iteration[stage.iteration]
        row["seconds"] += stage.seconds
        row["llm_calls"] += stage.llm_calls
        row["tokens"] += stage.input_tokens + stage.output_tokens

    def rounded(table: dict[Any, dict[str, float]]) -> dict[str, dict[str, float]]:
        return {
            str(k): {
                f: (round(v, 3) if isinstance(v, float) and not v.is_integer() else int(v))
                for f, v in row.items()
            }
            for k, row in table.items()
        }

    totals = spent or {
        "llm_calls": len(calls),
        "input_tokens": sum(c.input_tokens for c in calls),
        "output_tokens": sum(c.output_tokens for c in calls),
        "total_tokens": sum(c.input_tokens + c.output_tokens for c in calls),
        "cache_hits": sum(c.cached for c in calls),
    }
    return {
        "totals": {
            **totals,
            "retries": sum(s.retries for s in stages),
            "repairs": sum(s.repairs for s in stages),
        },
        "per_node": rounded(per_node),
        "per_model": rounded(per_model),
        "per_iteration": rounded(per_iteration),
    }


def write_bundle(
    directory: Path,
    *,
    state: dict[str, Any],
    documents: list[DocumentRef],
    chunk_counts: dict[str, int],
    metadata: dict[str, Any],
    finetune_system_prompt: str,
) -> dict[str, str]:
    """Write every file of the bundle into `directory`; return name -> path."""
    directory.mkdir(parents=True, exist_ok=True)
    sources = {d.id: d.source for d in documents}
    pairs: list[QAPair] = list(state.get("pairs", {}).values())
    kept = [p for p in pairs if p.status in ("accepted", "unanswerable")]
    rejected = [p for p in pairs if p.status == "rejected"]
    unverified = [p for p in pairs if p.status == "unverified"]
    spec = state["spec"]
    files: dict[str, str] = {}

    def put(name: str, writer: Any, value: Any) -> None:
        path = directory / name
        writer(path, value)
        files[name] = str(path)

    put("persona.json", write_json, state["persona"])
    put("goal.json", write_json, state["goal"])
    put("constraints.json", write_json, spec.constraints)
    put(
        "data_refs.json",
        write_json,
        [
            {**d.model_dump(mode="json"), "sha256": d.id, "chunks": chunk_counts.get(d.id, 0)}
            for d in documents
        ],
    )
    if state["goal"].loop == "qa":  # other goals write their own files (store/goal_export.py)
        put("qa.jsonl", write_jsonl, (qa_row(p, sources) for p in kept))
        put("rejected.jsonl", write_jsonl, (qa_row(p, sources) for p in rejected))
        if unverified:
            # Pairs only a judge that failed its self-test vouched for: never mixed with
            # the accepted ones.
            put("unverified.jsonl", write_jsonl, (qa_row(p, sources) for p in unverified))
        put(
            "qa_finetune.jsonl",
            write_jsonl,
            (finetune_row(p, finetune_system_prompt) for p in kept if p.status == "accepted"),
        )
    llm = getattr(spec, "llm", None)
    if isinstance(metadata.get("usage"), dict) and llm is not None:
        from personagen.llm.pricing import add_costs

        # Money beside the tokens, in place: the report is written from this same usage.
        add_costs(metadata["usage"], llm)
    metadata = {**metadata, "files": sorted([*files, "metadata.json"])}
    put("metadata.json", write_json, metadata)
    return files


def base_metadata(state: dict[str, Any], *, model_name: str) -> dict[str, Any]:
    """The run-level part of metadata.json."""
    ended = time.time()
    started = float(state.get("started_at") or ended)
    return {
        "run_id": state["run_id"],
        "personagen_version": personagen.__version__,
        "model": model_name,
        "started_at": started,
        "ended_at": ended,
        "runtime_seconds": round(ended - started, 3),
        "iterations": state.get("iteration", 0),
    }
