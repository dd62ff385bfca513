"""The compiled graph that `langgraph.json` points LangGraph's dev server and Studio at.

The server brings its own checkpointer and passes no context: each run builds its context
from its spec (`personagen.graph.context.default_context`), so a run starts from JSON input:
`{"spec": {...}}` (the run id is the thread id).
"""

from __future__ import annotations

from personagen.graph.builder import build_graph

graph = build_graph().compile(name="personagen")
