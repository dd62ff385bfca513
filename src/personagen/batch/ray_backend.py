"""The Ray backend: run-or-resume units on async Ray actors, checkpointed in Postgres.

Needs the `ray` extra (`pip install 'personagen[ray]'`), imported only when this backend is
used. Each actor is one worker process with its own event loop; it runs up to
`max_concurrency` units at once (runs wait on the model, so one process holds many), with
one Postgres session holding all its run locks and a small connection pool through which
all its runs read and write their checkpoints. A killed worker is restarted and its runs are
retried (`max_retries`); a retried run resumes from its Postgres checkpoint, and the per-run
advisory lock keeps a straggler of a crashed batch and its retry from driving the same run.

`address="local"` starts a single-machine cluster for this batch only, listening on the
loopback interface; any other address joins an existing cluster (`ray start --head` on one
machine, `ray start --address HEAD:6379` on the others). Workers on other machines need the
same package, the same paths for data and output (a shared file system), and access to the
database; the database URL reaches them through the actors' `runtime_env` environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from personagen.batch._checkpoints import (
    DB_URL_ENV,
    BatchError,
    is_postgres,
    open_pool,
    prepare_checkpoint,
)
from personagen.batch.local import tick_tokens
from personagen.batch.spec import BatchItem
from personagen.batch.summary import BatchSummary
from personagen.batch.unit import ModelRef, RunLocks, run_or_resume_retrying

log = logging.getLogger(__name__)

LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Set to 0 before `import ray`, Ray keeps a local cluster on 127.0.0.1 (its desktop mode)."""


class BatchWorker:
    """The body of a Ray actor: runs units on its loop, sharing its lock session and pool.

    Attributes:
        out_dir: where bundles are written (`<out_dir>/<run_id>/`).
        state_dir: this worker's chunk store, usage log and response cache.
    """

    def __init__(self, out_dir: str, state_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.state_dir = Path(state_dir)
        self.checkpoint = os.environ.get(DB_URL_ENV, "")
        self._pool: Any = None
        self._locks: RunLocks | None = None
        self._opening: asyncio.Lock | None = None

    async def _connections(self) -> tuple[RunLocks, Any]:
        # Opened on the actor's own event loop, on first use.
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._locks is None:
                self._locks = await RunLocks(self.checkpoint).__aenter__()
            if self._pool is None:
                self._pool = await open_pool(self.checkpoint, max_size=4)
        return self._locks, self._pool

    async def run(self, task: dict[str, Any]) -> dict[str, Any]:
        """Run or resume one run; returns its id, status, bundle folder, tokens and error."""
        from personagen.state.spec import RunSpec

        run_id = task["run_id"]
        model = ModelRef.from_dict(task["chat_model"]) if task.get("chat_model") else None
        try:
            locks, pool = await self._connections()
            result = await run_or_resume_retrying(
                run_id,
                RunSpec.model_validate(task["spec"]),
                out_dir=self.out_dir,
                state_dir=self.state_dir,
                checkpoint=self.checkpoint,
                chat_model=model,
                max_tokens=task.get("max_tokens"),
                lock_timeout=float(task.get("lock_timeout", 0.0)),
                locks=locks,
                pool=pool,
                retries=int(task.get("retries", 1)),
            )
        except Exception as exc:  # noqa: BLE001 - reported per run; Ray retries crashes
            log.exception("run %s failed", run_id)
            text = str(exc).strip().splitlines()
            return {
                "run_id": run_id,
                "status": "failed",
                "error": f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__,
                "pid": os.getpid(),
            }
        return {
            "run_id": run_id,
            "status": result.status,
            "bundle_dir": str(result.bundle_dir) if result.bundle_dir else None,
            "tokens": result.tokens,
            "error": result.reason if result.status != "done" else None,
            "pid": os.getpid(),
        }

    async def tokens(self, run_ids: list[str]) -> dict[str, int]:
        """Tokens spent so far by these runs, from this worker's usage log."""
        path = self.state_dir / "usage.sqlite"
        if not path.is_file():
            return {}
        from personagen.llm.usage import UsageLog

        usage = UsageLog(path)
        try:
            counts = {run_id: usage.totals(run_id)["total_tokens"] for run_id in run_ids}
        finally:
            usage.close()
        return {run_id: count for run_id, count in counts.items() if count}

    def pid(self) -> int:
        """The worker's process id."""
        return os.getpid()

    async def close(self) -> None:
        """Close the lock session and the connection pool."""
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        if self._locks is not None:
            await self._locks.close()
            self._locks = None


def import_ray(*, loopback: bool) -> Any:
    """Import Ray, with usage reporting off and, for a local cluster, loopback only.

    Raises:
        BatchError: Ray is not installed.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if loopback and "ray" not in sys.modules:
        # A cluster started for one batch on this machine needs no other host; without this
        # Ray binds its servers to the host's address.
        os.environ.setdefault(LOOPBACK_ENV, "0")
    try:
        import ray
    except ImportError as exc:
        raise BatchError("the ray backend needs Ray: pip install 'personagen[ray]'") from exc
    return ray


def start_ray(
    address: str = "local", *, init_kwargs: dict[str, Any] | None = None
) -> tuple[Any, bool]:
    """Connect to Ray (starting a local cluster for `address="local"`).

    Returns:
        The `ray` module and whether this call initialized it (then the caller shuts it down).
    """
    ray = import_ray(loopback=address == "local")
    if ray.is_initialized():
        return ray, False
    options: dict[str, Any] = {"log_to_driver": False, **(init_kwargs or {})}
    if address == "local":
        options.setdefault("include_dashboard", False)
        options.setdefault("_node_ip_address", "127.0.0.1")
    ray.init(address=address, **options)
    return ray, True


async def run_ray(
    items: Sequence[BatchItem],
    summary: BatchSummary,
    *,
    out_dir: Path,
    state_dir: Path,
    checkpoint: str,
    chat_model: ModelRef | None = None,
    concurrency: int = 6,
    lock_timeout: float = 30.0,
    max_tokens: int | None = None,
    retries: int = 1,
    address: str = "local",
    actors: int | None = None,
    max_retries: int = 3,
    num_cpus: float = 1.0,
    runtime_env: dict[str, Any] | None = None,
    init_kwargs: dict[str, Any] | None = None,
    token_interval: float = 2.0,
) -> None:
    """Run or resume every item on Ray actors.

    Args:
        items: the runs to work on.
        summary: receives every status change.
        out_dir: bundles go to `<out_dir>/<run_id>/` (a shared folder across machines).
        state_dir: each worker's chunk store, usage log and response cache.
        checkpoint: a libpq Postgres URL (workers on several machines share it).
        chat_model: a `ModelRef` each worker builds; model objects cannot cross to workers.
        concurrency: runs in flight at once per actor.
        lock_timeout: seconds a unit waits for a run locked by another runner.
        max_tokens: per-run token budget overriding the specs'.
        retries: further attempts at a run that raised (Ray's own retries cover crashes).
        address: "local" to start a cluster for this batch, or a cluster's address.
        actors: worker processes (default: the cluster's CPUs, at most one per run).
        max_retries: restarts of a dead worker and retries of its runs.
        num_cpus: CPUs reserved by each actor.
        runtime_env: extra Ray runtime environment for the actors (our variables are added).
        init_kwargs: extra arguments for `ray.init`.
        token_interval: seconds between two reports of running runs' tokens.

    Raises:
        BatchError: no Postgres URL, a model object given, or Ray missing.
    """
    if not is_postgres(checkpoint):
        raise BatchError(
            "the ray backend needs Postgres checkpoints (--db postgresql://...): workers on "
            "other processes and machines must reach the same checkpoints"
        )
    if chat_model is not None and not isinstance(chat_model, ModelRef):
        raise BatchError(
            "the ray backend cannot ship a chat model object to its workers: pass a "
            "ModelRef('package.module:factory', {...}) or set each spec's llm settings"
        )
    if not items:
        return
    # Before any worker exists: concurrent setup() on a fresh database races.
    await prepare_checkpoint(checkpoint)
    ray, started_here = start_ray(address, init_kwargs=init_kwargs)
    handles: list[Any] = []
    ticker: asyncio.Task[None] | None = None
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        count = max(1, min(actors or cpus, len(items)))
        env = dict((runtime_env or {}).get("env_vars") or {})
        env.update({DB_URL_ENV: checkpoint, "RAY_USAGE_STATS_ENABLED": "0"})
        remote_worker = ray.remote(BatchWorker)
        # One slot above the runs a driver sends, so progress polls are never queued.
        slots = concurrency + 1
        for _ in range(count):
            handles.append(
                remote_worker.options(
                    max_concurrency=slots,
                    max_restarts=max_retries,
                    max_task_retries=max_retries,
                    num_cpus=num_cpus,
                    runtime_env={**(runtime_env or {}), "env_vars": env},
                ).remote(str(out_dir), str(state_dir))
            )
        queue: asyncio.Queue[BatchItem] = asyncio.Queue()
        for item in items:
            queue.put_nowait(item)
        model = chat_model.to_dict() if chat_model is not None else None

        async def consume(handle: Any) -> None:
            while True:
                try:
                    item = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                summary.started(item.run_id)
                task = {
                    "run_id": item.run_id,
                    "spec": item.spec.model_dump(mode="json"),
                    "chat_model": model,
                    "max_tokens": max_tokens,
                    "lock_timeout": lock_timeout,
                    "retries": retries,
                }
                try:
                    outcome = await handle.run.remote(task)
                except ray.exceptions.RayActorError as exc:
                    # This worker is gone for good (its restarts are spent): hand the run
                    # to the others and stop feeding this one.
                    log.warning("worker died running %s: %s", item.run_id, exc)
                    summary.record_outcome(item.run_id, status="pending", error="worker died")
                    queue.put_nowait(item)
                    return
                except Exception as exc:  # noqa: BLE001 - a task error fails its run only
                    summary.failed(item.run_id, exc)
                    continue
                summary.record_outcome(
                    item.run_id,
                    status=outcome["status"],
                    bundle_dir=outcome.get("bundle_dir"),
                    tokens=outcome.get("tokens"),
                    error=outcome.get("error"),
                )

        async def poll_tokens(run_ids: list[str]) -> dict[str, int]:
            merged: dict[str, int] = {}
            for part in await asyncio.gather(*(h.tokens.remote(run_ids) for h in handles)):
                for run_id, count in part.items():
                    merged[run_id] = max(merged.get(run_id, 0), count)
            return merged

        ticker = asyncio.create_task(tick_tokens(summary, poll_tokens, token_interval))
        await asyncio.gather(*(consume(h) for h in handles for _ in range(concurrency)))
        while not queue.empty():
            left = queue.get_nowait()
            summary.failed(left.run_id, "every Ray worker died (max_retries spent)")
    finally:
        if ticker is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        for handle in handles:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(handle.close.remote(), timeout=10)
            with contextlib.suppress(Exception):
                ray.kill(handle)
        if started_here:
            ray.shutdown()


__all__ = ["BatchWorker", "import_ray", "run_ray", "start_ray"]
