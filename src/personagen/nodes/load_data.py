"""Node: load every data source into the chunk store; the state keeps only references."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from langgraph.runtime import Runtime

from personagen.data.loaders import load_sources
from personagen.graph.context import RunContext
from personagen.nodes._instrument import instrumented
from personagen.state.graph import State


@instrumented("load_data")
async def load_data(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Load files, globs, URLs and inline text; store their text by content hash."""
    spec = state["spec"]
    if state["goal"].params.get("check_language") or any(
        rule.kind == "language" for _, rule in spec.constraints.rules
    ):
        from personagen.evaluators.language import warm_up

        warm_up()  # in the background: the first language check comes after many LLM calls
    base_dir = Path(spec.base_dir) if spec.base_dir else None
    # Loading reads files and the network: keep it off the event loop.
    documents = await asyncio.to_thread(load_sources, spec.data, base_dir=base_dir)
    store = runtime.context.store
    for document in documents:
        store.put_document(document)
    return {"documents": [d.ref for d in documents]}
