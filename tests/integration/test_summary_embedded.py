"""The summary goal on the example data with the real embedded model, offline, one pass.

The bundled model is tiny: this checks the loop end to end (notes, summary, claims, judges,
gate, bundle), not the quality of what it writes. Whatever it writes must be accounted for:
accepted, or rejected with its reasons; every claim's spans must point at the source text.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pytest_socket import disable_socket, enable_socket

import personagen
from personagen.data.chunk_store import ChunkStore
from personagen.state.spec import Goal

from ..conftest import EXAMPLE_SPEC
from ..unit.goal_graph import run_loop

pytestmark = [pytest.mark.integration, pytest.mark.slow]

llama_cpp = pytest.importorskip("llama_cpp", reason="the embedded model needs the 'local' extra")


def _wired() -> bool:
    from personagen.graph.builder import build_graph

    return "summarize" in build_graph().nodes


async def test_summary_goal_runs_offline_on_the_embedded_model(tmp_path: Path) -> None:
    spec = personagen.load_spec(EXAMPLE_SPEC).model_copy(deep=True)
    assert spec.llm.provider == "embedded"
    prompt = "Mention the monthly cost first."
    spec.goal = Goal(
        name="summary",
        prompts=[prompt],
        params={"target_words": 80, "max_sections": 2, "max_notes": 3},
    )
    spec.run.max_iterations = 1
    disable_socket(allow_unix_socket=True)  # nothing may reach the network
    try:
        if _wired():
            result = await personagen.arun(
                spec, out_dir=tmp_path / "out", state_dir=tmp_path / "state"
            )
            assert result.status == "done" and result.bundle_dir is not None
            bundle, store_path = result.bundle_dir, tmp_path / "state" / "chunks.sqlite"
        else:  # the loops are not in the production graph yet: drive the test graph
            run = await run_loop(tmp_path, spec, None)
            bundle, store_path = run.bundle, tmp_path / "chunks.sqlite"
    finally:
        enable_socket()

    record = json.loads((bundle / "summary.json").read_text())
    assert record["status"] in ("accepted", "rejected")
    written = bundle / ("summary.md" if record["status"] == "accepted" else "summary_rejected.md")
    assert written.read_text().strip()
    if record["status"] == "rejected":
        assert record["reasons"]  # never rejected silently
    goal = json.loads((bundle / "goal.json").read_text())
    assert goal["name"] == "summary" and goal["user_prompts"] == [prompt]
    claims: list[dict[str, Any]] = [
        json.loads(line) for line in (bundle / "summary_claims.jsonl").read_text().splitlines()
    ]
    store = ChunkStore(store_path)
    try:
        for item in [*claims, *record["notes"]]:
            for span in item["spans"]:
                assert store.get_text(span["doc_id"])[span["start"] : span["end"]] == span["text"]
        for claim in claims:
            assert claim["supported"] == bool(claim["spans"])
        for note in record["notes"]:
            assert not note["used"] or note["spans"]  # only grounded notes are summarized
    finally:
        store.close()
