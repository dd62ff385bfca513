"""The batch unit: finish, resume or start one run, with at most one runner per run.

`run_or_resume` is idempotent, so a batch (or a retried Ray task, or `batch resume` after a
crash) can call it for every run without redoing work:

- a finished run (its graph reached the end) is read back from its checkpoint: no model is
  built and no model call is made;
- a run with a checkpoint is resumed from it (finished nodes and tasks are not redone);
- a run without one is started.

Before any of that the unit takes a per-run lock: a Postgres advisory lock (session level,
so the server drops it when the holder's connection dies) when the checkpoints are in
Postgres, an `flock` on a file next to the SQLite checkpoint file otherwise. A lock held
elsewhere is waited for up to `lock_timeout` seconds, then the unit returns status `locked`
without touching the run: after a driver crash, workers of the old batch may still write for
a few seconds, and two runners must never drive the same run.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel

from personagen.api import ProgressFn, RunResult, aresume, arun
from personagen.batch._checkpoints import is_postgres, normalize_checkpoint, pool_saver
from personagen.errors import DataSourceError, RunNotFound, SpecError
from personagen.state.spec import RunSpec

log = logging.getLogger(__name__)

LOCKED = "locked"
"""Status of a unit that found its run locked by another runner."""

_LOCK_POLL_SECONDS = 0.25
_memory_locks: set[str] = set()


@dataclass(frozen=True)
class ModelRef:
    """A chat model named by import path and keyword arguments, built where the run runs.

    Unlike a model object it crosses process and machine lines (Ray workers build their
    own) and is written to the batch manifest, so `batch resume` uses the same model.
    String arguments may contain `{run_id}`, replaced by the id of the run being built for.

    Attributes:
        factory: `package.module:callable` returning a LangChain chat model.
        kwargs: keyword arguments for the factory (JSON values).
    """

    factory: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        module, sep, attr = self.factory.partition(":")
        if not (module and sep and attr):
            raise ValueError(
                f"model factory {self.factory!r} must look like 'package.module:callable'"
            )

    def build(self, run_id: str = "") -> BaseChatModel:
        """Import the factory and call it with the arguments (`{run_id}` filled in)."""
        module_name, _, attr = self.factory.partition(":")
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
        kwargs = {
            key: value.replace("{run_id}", run_id) if isinstance(value, str) else value
            for key, value in self.kwargs.items()
        }
        return target(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (see `from_dict`)."""
        return {"factory": self.factory, "kwargs": dict(self.kwargs)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelRef:
        """Rebuild a reference written by `to_dict`."""
        return cls(factory=str(data["factory"]), kwargs=dict(data.get("kwargs") or {}))


ChatModelArg = BaseChatModel | ModelRef | None


def lock_key(run_id: str) -> int:
    """The Postgres advisory-lock key of a run: a signed 64-bit digest of its id.

    64 bits rather than `hashtext()`'s 32: with tens of thousands of runs in one database,
    32-bit keys collide often enough that unrelated runs would wait on each other.
    """
    digest = hashlib.blake2b(f"personagen-run:{run_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _deadline_passed(started: float, timeout: float) -> bool:
    return time.monotonic() - started >= timeout


class RunLocks:
    """Run locks held on one Postgres session: every lock a process holds dies with it.

    A batch process (or Ray worker) opens one of these and passes it to every unit, so
    locks cost one connection per process, not one per running run. Advisory locks are
    re-entrant within a session, so the process also keeps the set of runs it holds and
    refuses a second unit for the same run.
    """

    def __init__(self, url: str) -> None:
        """Prepare (the connection opens on `__aenter__`).

        Args:
            url: a libpq Postgres URL.
        """
        self.url = url
        self._conn: Any = None
        self._held: set[str] = set()
        self._mutex = asyncio.Lock()

    async def __aenter__(self) -> RunLocks:
        await self._connection()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _connection(self) -> Any:
        import psycopg

        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
        return self._conn

    async def _query(self, sql: str, key: int) -> bool:
        async with self._mutex:  # one statement at a time on the shared session
            conn = await self._connection()
            cursor = await conn.execute(sql, (key,))
            row = await cursor.fetchone()
        return bool(row[0]) if row else False

    async def try_acquire(self, run_id: str) -> bool:
        """Take the run's lock if nobody (in this process or elsewhere) holds it."""
        if run_id in self._held:
            return False
        self._held.add(run_id)  # claimed before awaiting: a twin unit sees it at once
        try:
            got = await self._query("SELECT pg_try_advisory_lock(%s)", lock_key(run_id))
        except BaseException:
            self._held.discard(run_id)
            raise
        if not got:
            self._held.discard(run_id)
        return got

    async def release(self, run_id: str) -> None:
        """Give the run's lock back (a lost session has already dropped it)."""
        if run_id not in self._held:
            return
        try:
            await self._query("SELECT pg_advisory_unlock(%s)", lock_key(run_id))
        except Exception:  # noqa: BLE001 - the server drops a dead session's locks
            log.warning("could not unlock run %s; its session is gone", run_id)
        finally:
            self._held.discard(run_id)

    @asynccontextmanager
    async def hold(self, run_id: str, *, timeout: float = 0.0) -> AsyncIterator[bool]:
        """Yield True while holding the run's lock, False if it stayed taken `timeout` s."""
        started = time.monotonic()
        while not (held := await self.try_acquire(run_id)):
            if _deadline_passed(started, timeout):
                break
            await asyncio.sleep(_LOCK_POLL_SECONDS)
        try:
            yield held
        finally:
            if held:
                await self.release(run_id)

    async def close(self) -> None:
        """Close the session (releasing whatever it still holds)."""
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
        self._held.clear()


@asynccontextmanager
async def _postgres_lock(
    run_id: str, target: str, *, timeout: float, locks: RunLocks | None
) -> AsyncIterator[bool]:
    if locks is not None:
        async with locks.hold(run_id, timeout=timeout) as held:
            yield held
        return
    async with RunLocks(target) as own, own.hold(run_id, timeout=timeout) as held:
        yield held


@asynccontextmanager
async def _file_lock(run_id: str, target: str, *, timeout: float) -> AsyncIterator[bool]:
    import fcntl

    lock_dir = Path(target).parent / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(run_id.encode()).hexdigest()[:24]
    fd = os.open(lock_dir / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        started = time.monotonic()
        while True:
            try:
                # flock locks belong to the open file, so two units in one process exclude
                # each other too; the kernel drops the lock when the holder dies.
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held = True
            except BlockingIOError:
                held = False
            if held or _deadline_passed(started, timeout):
                break
            await asyncio.sleep(_LOCK_POLL_SECONDS)
        if held:
            os.ftruncate(fd, 0)
            os.write(fd, f"{run_id} pid {os.getpid()}\n".encode())
        yield held
    finally:
        os.close(fd)


@asynccontextmanager
async def _memory_lock(run_id: str, *, timeout: float) -> AsyncIterator[bool]:
    started = time.monotonic()
    while run_id in _memory_locks and not _deadline_passed(started, timeout):
        await asyncio.sleep(_LOCK_POLL_SECONDS)
    held = run_id not in _memory_locks
    if held:
        _memory_locks.add(run_id)
    try:
        yield held
    finally:
        if held:
            _memory_locks.discard(run_id)


def run_lock(
    run_id: str, target: str, *, timeout: float = 0.0, locks: RunLocks | None = None
) -> Any:
    """An async context manager yielding True when this runner holds the run's lock.

    Args:
        run_id: the run to lock.
        target: the checkpoint target (a Postgres URL, a SQLite path or ':memory:').
        timeout: seconds to wait for a lock held elsewhere (0: try once).
        locks: the process's shared lock session (Postgres; a new session otherwise).
    """
    if is_postgres(target):
        return _postgres_lock(run_id, target, timeout=timeout, locks=locks)
    if target == ":memory:":
        return _memory_lock(run_id, timeout=timeout)
    return _file_lock(run_id, target, timeout=timeout)


async def read_state(run_id: str, target: str, *, pool: Any | None = None) -> Any:
    """The run's latest `StateSnapshot` (empty `values` when it has no checkpoint)."""
    from personagen.graph.builder import compile_graph
    from personagen.graph.checkpoint import open_checkpointer

    config: Any = {"configurable": {"thread_id": run_id}}
    if pool is not None:
        return await compile_graph(pool_saver(pool)).aget_state(config)
    async with open_checkpointer(target) as opened:
        return await compile_graph(opened).aget_state(config)


def is_finished(snapshot: Any) -> bool:
    """True when the run's graph has reached its end (nothing left to run).

    Judged by `snapshot.tasks`, not `snapshot.next`: `next` leaves out tasks whose writes
    are saved, so a run killed after its input checkpoint, or after a task finished but
    before its step was checkpointed, has an empty `next` and work left to do.
    """
    return bool(snapshot.values) and not snapshot.tasks


def has_started(snapshot: Any) -> bool:
    """True when the run's input is checkpointed, so it can be resumed.

    A run killed between its first checkpoint and the write of its input has a checkpoint
    but no spec in it: nothing ran yet, and it is started again from its spec.
    """
    return "spec" in snapshot.values


def _spent_tokens(run_id: str, bundle: str | None, state_dir: Path) -> int:
    if bundle:
        metadata = Path(bundle) / "metadata.json"
        try:
            totals = json.loads(metadata.read_text(encoding="utf-8"))["usage"]["totals"]
            return int(totals["total_tokens"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    log_path = state_dir / "usage.sqlite"
    if not log_path.is_file():
        return 0
    from personagen.llm.usage import UsageLog

    log = UsageLog(log_path)
    try:
        return log.totals(run_id)["total_tokens"]
    finally:
        log.close()


def finished_result(run_id: str, snapshot: Any, state_dir: Path) -> RunResult:
    """The `RunResult` of a finished run, from its final state (no model involved)."""
    values = snapshot.values
    bundle = values.get("bundle_dir")
    tokens = _spent_tokens(run_id, bundle, state_dir)
    return RunResult(
        run_id=run_id,
        status=values.get("status", "done"),
        bundle_dir=Path(bundle) if bundle else None,
        reports=list(values.get("reports", [])),
        pairs=dict(values.get("pairs", {})),
        summary=values.get("summary"),
        rewrites=dict(values.get("rewrites", {})),
        events=list(values.get("events", [])),
        tokens=tokens,
        spent=tokens,
    )


async def run_or_resume(
    run_id: str,
    spec: RunSpec,
    *,
    out_dir: str | Path,
    state_dir: str | Path,
    checkpoint: str | None = None,
    chat_model: ChatModelArg = None,
    embeddings: Embeddings | None = None,
    max_tokens: int | None = None,
    progress: ProgressFn | None = None,
    hooks: dict[str, Callable[..., Any] | list[Callable[..., Any]]] | None = None,
    lock_timeout: float = 0.0,
    locks: RunLocks | None = None,
    pool: Any | None = None,
) -> RunResult:
    """Bring one run to its end: read it back if finished, resume it, or start it.

    Args:
        run_id: the run (its checkpoint thread id and bundle folder name).
        spec: what to run when the run has no checkpoint yet (a resumed run uses the spec
            saved in its checkpoint).
        out_dir: bundles are written to `<out_dir>/<run_id>/`.
        state_dir: chunk store, usage log, response cache (and the default SQLite
            checkpoint file).
        checkpoint: a SQLite path, `sqlite:///path`, or a Postgres URL (libpq or
            `postgresql+psycopg://`); the state directory's SQLite file by default.
        chat_model: a chat model, or a `ModelRef` built only when the run has work left;
            the spec's `llm` settings by default.
        embeddings: embeddings overriding the provider's.
        max_tokens: token budget overriding the spec's.
        progress: called with every streamed update/custom event.
        hooks: Python hooks by hook point, as for `personagen.arun`.
        lock_timeout: seconds to wait for the run's lock when another runner holds it.
        locks: the process's `RunLocks` session (Postgres; one is opened otherwise).
        pool: the process's psycopg `AsyncConnectionPool` (Postgres): the run reads and
            writes its checkpoints through it instead of opening a connection of its own.

    Returns:
        The run's result; status `locked` (and `reason`) when another runner kept the lock.
    """
    target = normalize_checkpoint(checkpoint) or str(Path(state_dir) / "checkpoints.sqlite")
    async with run_lock(run_id, target, timeout=lock_timeout, locks=locks) as held:
        if not held:
            return RunResult(
                run_id=run_id,
                status=LOCKED,
                bundle_dir=None,
                reason=f"another runner holds the lock of run {run_id!r}",
            )
        shared = pool is not None and is_postgres(target)
        snapshot = await read_state(run_id, target, pool=pool if shared else None)
        if is_finished(snapshot):
            return finished_result(run_id, snapshot, Path(state_dir))
        model = chat_model.build(run_id) if isinstance(chat_model, ModelRef) else chat_model
        common: dict[str, Any] = {
            "out_dir": out_dir,
            "state_dir": state_dir,
            "checkpoint": target,
            "chat_model": model,
            "embeddings": embeddings,
            "max_tokens": max_tokens,
            "progress": progress,
            "checkpointer": pool_saver(pool) if shared else None,
        }
        if hooks:
            common["hooks"] = hooks
        if has_started(snapshot):
            return await aresume(run_id, **common)
        return await arun(spec, run_id=run_id, **common)


# Errors that come back on every attempt: retrying them only wastes time.
_NOT_TRANSIENT: tuple[type[BaseException], ...] = (SpecError, DataSourceError, RunNotFound)


async def run_or_resume_retrying(
    run_id: str,
    spec: RunSpec,
    *,
    retries: int = 1,
    retry_delay: float = 1.0,
    **kwargs: Any,
) -> RunResult:
    """`run_or_resume`, called again when it raises: the retry resumes from the checkpoint.

    Covers transient failures (a dropped connection, a rate limit past the client's own
    retries, a write race in a shared SQLite file); spec and data errors are not retried.

    Args:
        run_id: the run.
        spec: its spec.
        retries: further attempts after a failure.
        retry_delay: seconds before the first retry (doubled for each further one).
        **kwargs: the other `run_or_resume` arguments.

    Raises:
        Exception: the last attempt's error.
    """
    for attempt in range(retries + 1):
        try:
            return await run_or_resume(run_id, spec, **kwargs)
        except _NOT_TRANSIENT:
            raise
        except Exception as exc:
            if attempt >= retries:
                raise
            log.warning(
                "run %s failed (%s: %s); resuming it, retry %d of %d",
                run_id,
                type(exc).__name__,
                exc,
                attempt + 1,
                retries,
            )
            await asyncio.sleep(retry_delay * 2**attempt)
    raise AssertionError("unreachable")  # pragma: no cover
