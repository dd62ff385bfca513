"""Node instrumentation: time, model calls and progress for every node, checkpointed.

Wrapping a node adds `stages` and `llm_calls` entries to its update, so accounting travels
with the node's output into the checkpoint and survives a resume in another process.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from langgraph.config import get_config, get_stream_writer

from personagen.llm.usage import call_scope, recording
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
            recorder = None
            state, normalized = _normalized_input(state)
            if runtime is not None and _no_context(runtime.context):
                # Invoked without a context (LangGraph Studio, a plain `ainvoke`): use the
                # run's default one, and account its model calls as `personagen.run` does.
                context = default_context_of(state)
                runtime = runtime.override(context=context)
                recorder = context.recorder
            with call_scope(name) as scope, recording(recorder):
                update = await fn(state, runtime)
            update = {**normalized, **update}
            if recorder is not None and name == "compose_output":
                from personagen.graph.context import release_default_context

                release_default_context(_thread_id())  # the run is done
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


def _no_context(context: Any) -> bool:
    """Whether a node was given no live context (None, or the `{}` the LangGraph server sends).

    A JSON client cannot send the live objects a context holds, so a non-empty mapping is an
    error that names its keys, not something to ignore.
    """
    if context is None:
        return True
    if isinstance(context, Mapping):
        if context:
            raise ValueError(
                f"context {sorted(context)!r} from a JSON client is not used: a run takes its "
                "settings from its spec (and $PERSONAGEN_OUT_DIR / $PERSONAGEN_STATE_DIR); pass "
                "context=None or {}"
            )
        return True
    return False


def default_context_of(state: Any) -> Any:
    """The default context of the run this node belongs to (built from its spec)."""
    from personagen.graph.context import default_context

    thread_id = _thread_id()
    spec = state.get("spec") if isinstance(state, dict) else None
    if spec is None:
        raise RuntimeError(
            "this graph was invoked without a context and this task carries no spec: pass "
            "context=RunContext(...) (or run it with personagen.run/resume)"
        )
    return default_context(spec, thread_id)


def _normalized_input(state: Any) -> tuple[Any, dict[str, Any]]:
    """A raw input (a spec mapping, no run id, as LangGraph Studio sends) made a run's input.

    Returns the state to run the node on and the keys to write back, so the next nodes see
    the validated spec and the run id (the checkpoint thread id).
    """
    if not isinstance(state, dict) or "spec" not in state:
        return state, {}
    from personagen.state.spec import RunSpec

    fixes: dict[str, Any] = {}
    if not isinstance(state["spec"], RunSpec):
        from personagen.api import _as_spec

        fixes["spec"] = _as_spec(state["spec"])
    if "pair" not in state and "item" not in state and not state.get("run_id"):
        fixes["run_id"] = str(get_config().get("configurable", {}).get("thread_id") or "")
        if not fixes["run_id"]:
            raise ValueError("a run needs a run_id (or a thread_id in the config)")
    return ({**state, **fixes}, fixes) if fixes else (state, {})


def _thread_id() -> str:
    return str(get_config().get("configurable", {}).get("thread_id") or "default")
