"""The compiled graph that `langgraph.json` points LangGraph's dev server and Studio at.

The server brings its own checkpointer and passes `context={}` (JSON cannot carry a model
client): each run builds its context from its spec (`personagen.graph.context.default_context`),
so a run starts from JSON input: `{"spec": {...}}` (the run id is the thread id). Bundles go to
`$PERSONAGEN_OUT_DIR` (default `out`), state to `$PERSONAGEN_STATE_DIR` (default `.personagen`).
"""

from __future__ import annotations

from personagen.graph.builder import build_graph

_builder = build_graph()
# No context schema here: LangGraph would build `RunContext(**{})` from the server's `{}` and
# fail before the first node; the nodes take `{}` as "no context" and build the run's own.
_builder.context_schema = None
graph = _builder.compile(name="personagen")
