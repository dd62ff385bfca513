"""Token, call and time accounting per graph node and per model, and the token budget.

`UsageRecorder` is a LangChain callback handler: it sees every chat-model call made inside
the graph (ours, Ragas' through our adapter, and user hooks'), reads the node from LangGraph's
run metadata, and appends an `LLMCall` to the node's scope. The node wrapper returns the
scope's calls as a state update, so accounting is checkpointed with the node's output and
survives a resume in another process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from pathlib import Path
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult

from personagen.errors import BudgetExhausted
from personagen.state.metadata import LLMCall


class CallScope:
    """The calls and retries made while one node runs."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.calls: list[LLMCall] = []
        self.retries = 0
        self.repairs = 0
        self._lock = threading.Lock()

    def add(self, call: LLMCall) -> None:
        """Record a finished call."""
        with self._lock:
            self.calls.append(call)


_scope: ContextVar[CallScope | None] = ContextVar("personagen_call_scope", default=None)
_recorder: ContextVar[UsageRecorder | None] = ContextVar("personagen_recorder", default=None)


@contextmanager
def recording(recorder: UsageRecorder | None) -> Iterator[None]:
    """Add `recorder` to every LangChain call made inside the block (None: no change).

    For runs whose callbacks do not already carry it: a graph invoked without
    `personagen.run` (its config has no recorder).
    """
    if recorder is None:
        yield
        return
    _register_recorder_hook()
    token = _recorder.set(recorder)
    try:
        yield
    finally:
        _recorder.reset(token)


@cache
def _register_recorder_hook() -> None:
    from langchain_core.tracers.context import register_configure_hook

    register_configure_hook(_recorder, inheritable=True)


@contextmanager
def call_scope(node: str) -> Iterator[CallScope]:
    """Collect the calls made by the code inside the block (and the tasks it starts)."""
    scope = CallScope(node)
    token = _scope.set(scope)
    try:
        yield scope
    finally:
        _scope.reset(token)


def current_scope() -> CallScope | None:
    """The scope of the node now running, if any."""
    return _scope.get()


class UsageRecorder(BaseCallbackHandler):
    """Callback recording every chat-model call; enforces the run's token budget."""

    raise_error = True  # a BudgetExhausted raised here must stop the call
    run_inline = True

    def __init__(
        self,
        *,
        budget: int | None = None,
        spent: int = 0,
        sink: Callable[[LLMCall], None] | None = None,
    ) -> None:
        self.budget = budget
        self.spent = spent  # tokens spent by this run, including earlier processes
        self.sink = sink  # durable log of every call (see UsageLog)
        self.calls: list[LLMCall] = []
        self._started: dict[UUID, tuple[float, str | None, str]] = {}
        self._lock = threading.Lock()

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[Any]],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        invocation_params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Refuse the call when the budget is spent; remember when and where it started."""
        with self._lock:
            if self.budget is not None and self.spent >= self.budget:
                raise BudgetExhausted(
                    f"token budget of {self.budget} reached ({self.spent} tokens spent)"
                )
            params = invocation_params or {}
            model = str(
                params.get("model_name") or params.get("model") or params.get("_type") or "unknown"
            )
            node = (metadata or {}).get("langgraph_node")
            scope = current_scope()
            self._started[run_id] = (time.perf_counter(), scope.node if scope else node, model)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        """Record the finished call's tokens and seconds."""
        with self._lock:
            started, node, model = self._started.pop(run_id, (time.perf_counter(), None, "unknown"))
        input_tokens = output_tokens = 0
        cached = False
        for generations in response.generations:
            for generation in generations:
                message = getattr(generation, "message", None)
                usage = getattr(message, "usage_metadata", None) or {}
                input_tokens += int(usage.get("input_tokens", 0))
                output_tokens += int(usage.get("output_tokens", 0))
                info = generation.generation_info or {}
                meta = getattr(message, "response_metadata", None) or {}
                cached = cached or bool(info.get("cached") or meta.get("cached"))
        if not (input_tokens or output_tokens):
            token_usage = (response.llm_output or {}).get("token_usage") or {}
            input_tokens = int(token_usage.get("prompt_tokens", 0))
            output_tokens = int(token_usage.get("completion_tokens", 0))
        call = LLMCall(
            node=node or "unscoped",
            model=model,
            input_tokens=0 if cached else input_tokens,
            output_tokens=0 if cached else output_tokens,
            seconds=round(time.perf_counter() - started, 6),
            cached=cached,
        )
        with self._lock:
            self.spent += call.input_tokens + call.output_tokens
            self.calls.append(call)
        if self.sink is not None:
            self.sink(call)
        scope = current_scope()
        if scope is not None:
            scope.add(call)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Forget the failed call's start (retries are counted by the client)."""
        with self._lock:
            self._started.pop(run_id, None)


class UsageLog:
    """An append-only, durable log of every model call of every run (SQLite).

    The state records calls with the node that saved them; a node that fails (budget, crash)
    loses its update but its tokens were still spent. This log keeps them, so budgets and
    the bundle's token totals count what was really spent, across processes.
    """

    def __init__(self, path: str | Path) -> None:
        import sqlite3

        self._lock = threading.Lock()
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL survives a killed process (the case that matters here) without an
        # fsync per call; a power cut may lose the last few records.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS llm_calls (run_id TEXT NOT NULL, node TEXT, model TEXT,"
            " input_tokens INTEGER, output_tokens INTEGER, seconds REAL, cached INTEGER,"
            " at REAL)"
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS llm_calls_run ON llm_calls (run_id)")

    def append(self, run_id: str, call: LLMCall) -> None:
        """Record one finished call."""
        with self._lock:
            self._db.execute(
                "INSERT INTO llm_calls VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    call.node,
                    call.model,
                    call.input_tokens,
                    call.output_tokens,
                    call.seconds,
                    int(call.cached),
                    time.time(),
                ),
            )

    def totals(self, run_id: str) -> dict[str, int]:
        """Calls, tokens and cache hits spent by a run so far."""
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0),"
                " COALESCE(SUM(cached), 0) FROM llm_calls WHERE run_id = ?",
                (run_id,),
            ).fetchone()
        calls, input_tokens, output_tokens, hits = (int(v) for v in row)
        return {
            "llm_calls": calls,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
            "cache_hits": hits,
        }

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
