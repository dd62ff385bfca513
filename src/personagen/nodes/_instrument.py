"""Node instrumentation: time, model calls and progress for every node, checkpointed.

Wrapping a node adds `stages` and `llm_calls` entries to its update, so accounting travels
with the node's output into the checkpoint and survives a resume in another process.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from langgraph.config import get_stream_writer

from personagen.llm.usage import call_scope
from personagen.state.metadata import StageRun

NodeFn = Callable[..., Awaitable[dict[str, Any]]]


def _emit(event: dict[str, Any]) -> None:
    try:
        get_stream_writer()(event)
    except Exception:  # noqa: BLE001 - outside a graph (direct calls in tests) there is no writer
        pass


def instrumented(name: str) -> Callable[[NodeFn], NodeFn]:
    """Decorate an async node so its timing and model usage land in the state."""

    def decorate(fn: NodeFn) -> NodeFn:
        @functools.wraps(fn)
        async def node(state: Any, runtime: Any) -> dict[str, Any]:
            iteration = int(state.get("iteration", 0) or 0) if isinstance(state, dict) else 0
            started = time.time()
            clock = time.perf_counter()
            _emit({"stage": name, "event": "start", "iteration": iteration})
            with call_scope(name) as scope:
                update = await fn(state, runtime)
            stage = StageRun(
                node=name,
                iteration=iteration,
                started=started,
                seconds=round(time.perf_counter() - clock, 6),
                llm_calls=len(scope.calls),
                input_tokens=sum(c.input_tokens for c in scope.calls),
                output_tokens=sum(c.output_tokens for c in scope.calls),
                cache_hits=sum(c.cached for c in scope.calls),
                retries=scope.retries,
                repairs=scope.repairs,
            )
            _emit(
                {
                    "stage": name,
                    "event": "end",
                    "iteration": iteration,
                    "seconds": stage.seconds,
                    "tokens": stage.input_tokens + stage.output_tokens,
                }
            )
            update = dict(update)
            update["stages"] = [*update.get("stages", []), stage]
            update["llm_calls"] = [*update.get("llm_calls", []), *scope.calls]
            return update

        return node

    return decorate
