"""The Python API: `run`/`arun` a spec, `resume`/`aresume` a run from its checkpoint.

    result = personagen.run("examples/spec.yaml")
    result.bundle_dir, result.status, result.accepted

Everything a run needs beyond the spec (checkpoint location, output directory, an injected
chat model) is an argument here; nothing is read from global state.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig

from personagen.errors import BudgetExhausted, RunNotFound, SpecError, StopRun
from personagen.state.items import QAPair
from personagen.state.metadata import Event, IterationReport
from personagen.state.outputs import RewriteItem, SummaryDraft
from personagen.state.review import ReviewDecision
from personagen.state.spec import RunSpec

if TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver

ProgressFn = Callable[[dict[str, Any]], None]
HooksArg = dict[str, Callable[..., Any] | list[Callable[..., Any]]] | None
DEFAULT_STATE_DIR = Path(".personagen")


@dataclass
class RunResult:
    """What a run produced (or how far it got)."""

    run_id: str
    status: str
    bundle_dir: Path | None
    reports: list[IterationReport] = field(default_factory=list)
    pairs: dict[str, QAPair] = field(default_factory=dict)
    """The Q/A pairs (the `qa` goal), by id."""
    summary: SummaryDraft | None = None
    """The summary and its judged claims (the `summary` goal)."""
    rewrites: dict[str, RewriteItem] = field(default_factory=dict)
    """The rewritten units, by id (the `rewrite` goal and goals extending it)."""
    events: list[Event] = field(default_factory=list)
    tokens: int = 0
    """Tokens the run has spent, over every process that worked on it."""
    spent: int = 0
    """Tokens spent by the run so far as the budget counts them (includes unsaved work)."""
    reason: str | None = None
    interrupt: Any = None
    """What a review hook is waiting for, when the status is `waiting_for_review`."""

    @property
    def accepted(self) -> list[QAPair]:
        """Pairs that met the baseline and every constraint."""
        return [p for p in self.pairs.values() if p.status == "accepted"]

    @property
    def rejected(self) -> list[QAPair]:
        """Pairs given up on, with their reasons."""
        return [p for p in self.pairs.values() if p.status == "rejected"]

    @property
    def unverified(self) -> list[QAPair]:
        """Pairs only a judge that failed its self-test would accept (never accepted)."""
        return [p for p in self.pairs.values() if p.status == "unverified"]

    @property
    def metadata(self) -> dict[str, Any]:
        """The bundle's metadata.json (empty before the run finished)."""
        if self.bundle_dir is None or not (self.bundle_dir / "metadata.json").is_file():
            return {}
        return json.loads((self.bundle_dir / "metadata.json").read_text(encoding="utf-8"))


def new_run_id() -> str:
    """A sortable, unique run id."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def register_run(
    run_id: str,
    spec: RunSpec,
    *,
    out_dir: str | Path = "out",
    state_dir: str | Path = DEFAULT_STATE_DIR,
    checkpoint: str | None = None,
    db_url: str | None = None,
    list_it: bool = True,
) -> Path:
    """Make a run resumable before anything else happens: write its record durably.

    The record holds the spec and where the run writes (out dir, state dir, checkpoint);
    `resume` starts from it when the run was killed before its first checkpoint, and
    writes the bundle to the recorded out dir. The run store lists the run from now on
    (unless `list_it` is False).
    `arun` calls this itself; call it first (as the CLI does) to show the run id only once
    the run can be resumed.

    Returns:
        The record's path.
    """
    import logging
    import os

    from personagen.store.run_records import RunRecord, this_host, write_record
    from personagen.store.runs import RunStore, RunStoreError, default_db_url

    state = Path(state_dir)
    record = RunRecord(
        run_id=run_id,
        spec=spec.model_dump(mode="json"),
        out_dir=str(Path(out_dir).resolve()),
        state_dir=str(state.resolve()),
        checkpoint=_durable_target(checkpoint),
        host=this_host(),
        pid=os.getpid(),
        created_at=time.time(),
    )
    path = write_record(record)
    if not list_it:  # the caller records the start in the run store itself
        return path
    try:
        with RunStore(db_url or default_db_url(state)) as runs:
            runs.record_start(
                run_id,
                spec,
                owner=(record.host, record.pid),
                state_dir=record.state_dir,
                out_dir=record.out_dir,
            )
    except RunStoreError as exc:  # bookkeeping never stops a run
        logging.getLogger(__name__).warning("run store: record_start failed: %s", exc)
    return path


def _durable_target(checkpoint: str | None) -> str | None:
    """A checkpoint target as it can be found again from another directory."""
    if checkpoint is None or checkpoint == ":memory:" or "://" in checkpoint:
        return None if checkpoint == ":memory:" else checkpoint
    return str(Path(checkpoint).resolve())


@asynccontextmanager
async def _checkpointer(
    given: BaseCheckpointSaver | None, target: str
) -> AsyncIterator[BaseCheckpointSaver]:
    """The caller's open checkpointer (left open), or one opened on `target` and closed."""
    if given is not None:
        yield given
        return
    from personagen.graph.checkpoint import open_checkpointer

    async with open_checkpointer(target) as saver:
        yield saver


def _as_spec(spec: RunSpec | dict[str, Any] | str | Path) -> RunSpec:
    from personagen.specfile import load_spec, parse_spec

    if isinstance(spec, RunSpec):
        return spec
    if isinstance(spec, dict):
        return parse_spec(spec)
    return load_spec(spec)


@dataclass
class _Session:
    """What `arun` and `aresume` share: where state lives and what model to use."""

    out_dir: Path
    state_dir: Path
    checkpoint: str | None
    chat_model: BaseChatModel | None
    embeddings: Embeddings | None
    progress: ProgressFn | None
    hooks: HooksArg = None
    db_url: str | None = None
    checkpointer: BaseCheckpointSaver | None = None
    expected_tokens: int | None = None
    """The pre-run token estimate, for the progress events' ETA."""

    def resolve_hooks(self, spec: RunSpec) -> dict[str, list[tuple[str, Any]]]:
        from personagen.evaluators.plugins import load_callable
        from personagen.state.spec import HOOK_POINTS

        resolved: dict[str, list[tuple[str, Any]]] = {}
        for spec_point, refs in spec.hooks.items():
            for ref in refs:
                resolved.setdefault(spec_point, []).append((ref, load_callable(ref)))
        given: Any
        for point_name, given in (self.hooks or {}).items():
            point = str(point_name)
            if point not in HOOK_POINTS:
                raise SpecError(
                    f"hooks: unknown hook point {point!r} (points: {', '.join(HOOK_POINTS)})"
                )
            for fn in given if isinstance(given, list | tuple) else [given]:
                if not callable(fn):
                    raise SpecError(f"hooks.{point}: {fn!r} is not callable")
                name = getattr(fn, "__qualname__", None) or repr(fn)
                resolved.setdefault(point, []).append((name, fn))
        return resolved

    def context(self, run_id: str, spec: RunSpec, *, max_tokens: int | None) -> Any:
        from personagen.data.chunk_store import ChunkStore
        from personagen.graph.context import RunContext
        from personagen.llm.factory import make_llm_client
        from personagen.llm.usage import UsageLog, UsageRecorder

        self.state_dir.mkdir(parents=True, exist_ok=True)
        client = make_llm_client(
            spec.llm,
            seed=spec.run.seed,
            chat_model=self.chat_model,
            embeddings=self.embeddings,
            state_dir=self.state_dir,
        )
        # A separate judge model is built from its own settings (a caller-given chat model
        # is the run's model, not the judge's); it shares the embeddings unless it has its own.
        judge = (
            None
            if spec.llm.judge is None
            else make_llm_client(spec.llm.judge, seed=spec.run.seed, embeddings=client.embeddings)
        )
        if spec.run.cache:
            from personagen.llm.cache import with_response_cache

            client.chat = with_response_cache(client.chat, self.state_dir / "llm_cache.sqlite")
            if judge is not None:
                judge.chat = with_response_cache(judge.chat, self.state_dir / "llm_cache.sqlite")
        log = UsageLog(self.state_dir / "usage.sqlite")
        spent = log.totals(run_id)["total_tokens"]
        return RunContext(
            llm=client,
            judge_llm=judge,
            store=ChunkStore(self.state_dir / "chunks.sqlite"),
            out_dir=self.out_dir,
            recorder=UsageRecorder(
                budget=max_tokens, spent=spent, sink=lambda call: log.append(run_id, call)
            ),
            usage_log=log,
            max_concurrency=spec.run.max_concurrency,
            hooks=self.resolve_hooks(spec),
        )

    async def drive(
        self,
        run_id: str,
        spec: RunSpec,
        graph_input: Any,
        *,
        max_tokens: int | None,
        time_limit: float | None = None,
    ) -> RunResult:
        from personagen.store.run_records import RunLock

        # One process drives a run at a time; the lock also tells `runs list` (and the next
        # start) that this run's process lives: a run whose lock is free was interrupted.
        lock = RunLock(self.state_dir, run_id)
        await asyncio.to_thread(lock.acquire)
        try:
            return await self._drive_locked(
                run_id, spec, graph_input, max_tokens=max_tokens, time_limit=time_limit
            )
        finally:
            lock.release()

    async def _drive_locked(
        self,
        run_id: str,
        spec: RunSpec,
        graph_input: Any,
        *,
        max_tokens: int | None,
        time_limit: float | None = None,
    ) -> RunResult:
        import os

        from personagen.graph.builder import compile_graph
        from personagen.graph.checkpoint import default_checkpoint_path
        from personagen.store.run_records import this_host
        from personagen.store.runs import RunStore, default_db_url

        runs = RunStore(self.db_url or default_db_url(self.state_dir))  # a bad URL raises here
        await runs.arecord("mark_stale_runs")
        await runs.arecord(
            "record_start",
            run_id,
            spec,
            owner=(this_host(), os.getpid()),
            state_dir=self.state_dir.resolve(),
            out_dir=self.out_dir.resolve(),
        )
        deadline = None if time_limit is None else time.monotonic() + time_limit
        from personagen.progress import ProgressTracker

        tracker = ProgressTracker(expected_tokens=self.expected_tokens)
        context = self.context(run_id, spec, max_tokens=max_tokens)
        config: RunnableConfig = {
            "configurable": {"thread_id": run_id},
            "callbacks": [context.recorder],
            "recursion_limit": 20 + 8 * spec.run.max_iterations,
        }
        target = self.checkpoint or str(default_checkpoint_path(self.state_dir))
        try:
            async with _checkpointer(self.checkpointer, target) as saver:
                graph = compile_graph(saver)
                reason = None
                status = "running"
                # "sync": each step's checkpoint is written before the next step starts, so no
                # background write is still in flight when a run stops (error, time limit).
                stream = graph.astream(
                    graph_input,
                    config,
                    context=context,
                    stream_mode=["updates", "custom"],
                    durability="sync",
                )
                try:
                    while True:
                        # A time limit stops only the graph's stream (LangGraph saves what
                        # finished); cancelling the whole run could cut a checkpoint write.
                        remaining = None if deadline is None else deadline - time.monotonic()
                        try:
                            mode, chunk = await asyncio.wait_for(anext(stream), remaining)
                        except StopAsyncIteration:
                            break
                        except TimeoutError:
                            status, reason = "interrupted", "time limit reached"
                            break
                        if self.progress is not None:
                            self.progress({"mode": mode, "data": chunk})
                            snapshot_now = tracker.feed({"mode": mode, "data": chunk})
                            if snapshot_now is not None:
                                self.progress({"mode": "progress", "data": snapshot_now})
                except BudgetExhausted as exc:
                    status, reason = "budget_exhausted", str(exc)
                except StopRun as exc:
                    status, reason = "stopped", str(exc) or "stopped by a hook"
                finally:
                    await stream.aclose()  # type: ignore[attr-defined]
                snapshot = await graph.aget_state(config)
        except BaseException as exc:
            stopped = isinstance(exc, KeyboardInterrupt | asyncio.CancelledError)
            # Tokens really spent, including calls whose step never reached a checkpoint.
            spent_so_far = context.usage_log.totals(run_id)
            await runs.arecord(
                "record_status",
                run_id,
                "interrupted" if stopped else "failed",
                "interrupted (Ctrl-C or cancelled)" if stopped else f"{type(exc).__name__}: {exc}",
                usage=spent_so_far,
            )
            runs.close()
            raise
        finally:
            totals = context.usage_log.totals(run_id)
            context.close()
        values = snapshot.values
        waiting = [i.value for task in snapshot.tasks for i in task.interrupts]
        if status == "running":
            if waiting:
                status = "waiting_for_review"
            else:
                status = values.get("status", "running") if not snapshot.next else "interrupted"
        bundle = values.get("bundle_dir")
        failure = None
        if status == "done":
            from personagen.outcome import model_label, produced_anything, unparsed_failure

            pairs = values.get("pairs", {})
            failure = unparsed_failure(
                values.get("events", []),
                produced=produced_anything(
                    pairs, values.get("summary"), values.get("rewrites", {})
                ),
                has_items=any(getattr(p, "answer", "") for p in pairs.values()),
                label=model_label(spec.llm, self.chat_model),
            )
        finished = (
            status == "done" and bundle is not None and (Path(bundle) / "metadata.json").is_file()
        )
        if finished and bundle:
            directory = Path(bundle)
            files = {p.name: str(p) for p in sorted(directory.iterdir()) if p.is_file()}
            metadata = json.loads((directory / "metadata.json").read_text(encoding="utf-8"))
            await runs.arecord(
                "record_finish", run_id, metadata, list(values.get("pairs", {}).values()), files
            )
        if failure is not None:
            # The bundle stays (it shows what the model returned); the run failed.
            status, reason = "failed", failure
            await runs.arecord("record_status", run_id, status, reason, usage=totals)
        elif not finished:
            await runs.arecord("record_status", run_id, status, reason, usage=totals)
        runs.close()
        return RunResult(
            run_id=run_id,
            status=status,
            bundle_dir=Path(bundle) if bundle else None,
            reports=list(values.get("reports", [])),
            pairs=dict(values.get("pairs", {})),
            summary=values.get("summary"),
            rewrites=dict(values.get("rewrites", {})),
            events=list(values.get("events", [])),
            tokens=totals["total_tokens"],
            spent=context.recorder.spent,
            reason=reason,
            interrupt=waiting[0] if waiting else None,
        )


async def arun(
    spec: RunSpec | dict[str, Any] | str | Path,
    *,
    run_id: str | None = None,
    out_dir: str | Path = "out",
    state_dir: str | Path = DEFAULT_STATE_DIR,
    checkpoint: str | None = None,
    chat_model: BaseChatModel | None = None,
    embeddings: Embeddings | None = None,
    max_tokens: int | None = None,
    progress: ProgressFn | None = None,
    hooks: HooksArg = None,
    db_url: str | None = None,
    time_limit: float | None = None,
    checkpointer: BaseCheckpointSaver | None = None,
    expected_tokens: int | None = None,
) -> RunResult:
    """Run a spec to the end (or to its token budget); resumable by `run_id`.

    Args:
        spec: a `RunSpec`, a mapping, or the path of a YAML/JSON spec file.
        run_id: the checkpoint thread id (a new one by default).
        out_dir: bundles are written to `<out_dir>/<run_id>/`.
        state_dir: where the SQLite checkpoints and the chunk store live.
        checkpoint: a SQLite path or a Postgres URL overriding the default checkpoint file.
        chat_model: a LangChain chat model to use instead of the spec's provider.
        embeddings: LangChain embeddings to use instead of the provider's.
        max_tokens: token budget overriding `spec.run.max_tokens`.
        progress: called with every streamed event: `{"mode": "updates"|"custom", "data"}`
            as LangGraph streams them, and `{"mode": "progress", "data": {stage, iteration,
            done, total, tokens, expected_tokens, elapsed, eta}}` after each task start/end
            (see `personagen.progress`).
        hooks: user callables by hook point (`after_persona`, `after_questions`,
            `after_answers`, `after_evaluation`, `before_output`), added to the spec's.
        db_url: the run store (SQLAlchemy URL); default `PERSONAGEN_DB_URL` or
            `<state_dir>/runs.sqlite`.
        time_limit: seconds after which the run stops cleanly (status `interrupted`,
            resumable), e.g. inside a serverless function's time limit.
        checkpointer: an open LangGraph checkpointer to use instead of opening one on
            `checkpoint`, e.g. an `AsyncPostgresSaver` on a connection pool that many runs
            share; it must use `personagen.graph.checkpoint.serializer()` and stays open
            (its owner closes it).
        expected_tokens: the run's estimated tokens (`personagen.estimate.estimate_run`),
            for the progress events' ETA.
    """
    resolved = _as_spec(spec)
    session = _Session(
        Path(out_dir),
        Path(state_dir),
        checkpoint,
        chat_model,
        embeddings,
        progress,
        hooks,
        db_url,
        checkpointer,
        expected_tokens,
    )
    rid = run_id or new_run_id()
    if checkpointer is None:  # a caller's own checkpointer is its own to find again
        await asyncio.to_thread(
            register_run,
            rid,
            resolved,
            out_dir=out_dir,
            state_dir=state_dir,
            checkpoint=checkpoint,
            db_url=db_url,
            list_it=False,  # drive() records the start a moment later
        )
    return await session.drive(
        rid,
        resolved,
        {"spec": resolved, "run_id": rid},
        max_tokens=max_tokens if max_tokens is not None else resolved.run.max_tokens,
        time_limit=time_limit,
    )


def run(spec: RunSpec | dict[str, Any] | str | Path, **kwargs: Any) -> RunResult:
    """Synchronous `arun` (not for use inside a running event loop)."""
    return asyncio.run(arun(spec, **kwargs))


async def aresume(
    run_id: str,
    *,
    decision: ReviewDecision | dict[str, Any] | None = None,
    out_dir: str | Path | None = None,
    state_dir: str | Path = DEFAULT_STATE_DIR,
    checkpoint: str | None = None,
    chat_model: BaseChatModel | None = None,
    embeddings: Embeddings | None = None,
    max_tokens: int | None = None,
    progress: ProgressFn | None = None,
    hooks: HooksArg = None,
    db_url: str | None = None,
    time_limit: float | None = None,
    checkpointer: BaseCheckpointSaver | None = None,
) -> RunResult:
    """Continue a run from its last checkpoint; finished nodes and tasks are not redone.

    Args:
        run_id: the run to continue.
        decision: the reviewer's `ReviewDecision` when the run waits at a review hook.
        out_dir: where to write the bundle; by default where the run was started to write
            it (its run record), else `out`.
        state_dir: as for `arun`.
        checkpoint: as for `arun`.
        chat_model: as for `arun`.
        embeddings: as for `arun`.
        max_tokens: a new token budget (e.g. larger, after `budget_exhausted`).
        progress: as for `arun`.
        hooks: as for `arun` (Python hooks are not checkpointed: pass them again).
        db_url: as for `arun`.
        time_limit: as for `arun`.
        checkpointer: as for `arun`.
    """
    from personagen.graph.builder import compile_graph
    from personagen.graph.checkpoint import run_checkpoint_path
    from personagen.specfile import parse_spec
    from personagen.store.run_records import read_record

    record = read_record(state_dir, run_id)
    target = (
        checkpoint
        or (record.checkpoint if record is not None else None)
        or str(run_checkpoint_path(run_id, Path(state_dir)))
    )
    config: RunnableConfig = {"configurable": {"thread_id": run_id}}
    async with _checkpointer(checkpointer, target) as saver:
        snapshot = await compile_graph(saver).aget_state(config)
    graph_input: Any = None
    if "spec" in snapshot.values:
        spec: RunSpec = snapshot.values["spec"]
    elif (
        record is not None
        and decision is None
        and (checkpoint is None or _durable_target(checkpoint) == record.checkpoint)
    ):
        # Killed before its input was checkpointed: nothing ran yet, start it from its record.
        spec = parse_spec(record.spec, origin=f"run record of {run_id!r}")
        graph_input = {"spec": spec, "run_id": run_id}
    else:
        where = target if checkpointer is None else type(checkpointer).__name__
        raise RunNotFound(
            f"no checkpoint for run {run_id!r} in {where}"
            + ("" if record is not None else f" and no run record in {Path(state_dir) / 'runs'}")
        )
    if out_dir is None:
        out_dir = record.out_dir if record is not None else "out"
    session = _Session(
        Path(out_dir),
        Path(state_dir),
        target,  # where the run was found
        chat_model,
        embeddings,
        progress,
        hooks,
        db_url,
        checkpointer,
    )
    budget = max_tokens if max_tokens is not None else spec.run.max_tokens
    if decision is not None:
        from langgraph.types import Command

        payload = decision.model_dump() if isinstance(decision, ReviewDecision) else decision
        graph_input = Command(resume=payload)
    return await session.drive(run_id, spec, graph_input, max_tokens=budget, time_limit=time_limit)


def resume(run_id: str, **kwargs: Any) -> RunResult:
    """Synchronous `aresume`."""
    return asyncio.run(aresume(run_id, **kwargs))


async def pending_review(
    run_id: str, *, state_dir: str | Path = DEFAULT_STATE_DIR, checkpoint: str | None = None
) -> dict[str, Any] | None:
    """The review request a run is waiting on, or None."""
    from personagen.graph.builder import compile_graph
    from personagen.graph.checkpoint import open_checkpointer, run_checkpoint_path
    from personagen.store.run_records import read_record

    record = read_record(state_dir, run_id)
    target = (
        checkpoint
        or (record.checkpoint if record is not None else None)
        or str(run_checkpoint_path(run_id, Path(state_dir)))
    )
    async with open_checkpointer(target) as saver:
        snapshot = await compile_graph(saver).aget_state({"configurable": {"thread_id": run_id}})
    if not snapshot.values:
        raise RunNotFound(f"no checkpoint for run {run_id!r} in {target}")
    waiting = [i.value for task in snapshot.tasks for i in task.interrupts]
    return waiting[0] if waiting else None


async def astream(
    spec: RunSpec | dict[str, Any] | str | Path, **kwargs: Any
) -> AsyncIterator[dict[str, Any]]:
    """Run a spec, yielding progress events as they happen; the last event holds the result.

    Events: `{"type": "stage", "stage", "event": "start"|"end", "iteration", "seconds",
    "tokens"}` for every node, `{"type": "update", "node"}` for every finished task (one per
    answered or judged item in the fan-outs), `{"type": "tokens", "total"}` after each node
    that spent tokens, `{"type": "progress", "stage", "iteration", "done", "total",
    "tokens", "expected_tokens", "elapsed", "eta"}` after each task start or end (counts per
    stage such as 7 of 12 answered; ETA when `expected_tokens` is given), and finally
    `{"type": "result", "result": RunResult}`.
    Takes the same keyword arguments as `arun` (except `progress`).
    """
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    total = 0

    def progress(event: dict[str, Any]) -> None:
        nonlocal total
        data = event["data"]
        if event["mode"] == "custom" and isinstance(data, dict) and "stage" in data:
            queue.put_nowait({"type": "stage", **data})
            if data.get("tokens"):
                total += int(data["tokens"])
                queue.put_nowait({"type": "tokens", "total": total})
        elif event["mode"] == "updates" and isinstance(data, dict):
            for node in data:
                queue.put_nowait({"type": "update", "node": node})
        elif event["mode"] == "progress":
            queue.put_nowait({"type": "progress", **data})

    async def drive() -> RunResult:
        try:
            return await arun(spec, progress=progress, **kwargs)
        finally:
            queue.put_nowait(None)

    task = asyncio.create_task(drive())
    try:
        while (event := await queue.get()) is not None:
            yield event
        yield {"type": "result", "result": await task}
    finally:
        if not task.done():
            task.cancel()
