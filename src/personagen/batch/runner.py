"""Run a batch file, or resume a batch by id: manifest, dispatch to a backend, summary.

`arun_batch` expands the batch, writes `<out>/<batch_id>/manifest.json` before any run
starts, and hands the runs not yet done to the chosen backend; `aresume_batch` reads the
manifest back and does the same, so after any crash (driver, worker, machine) it finishes
what is unfinished and leaves finished runs alone. Running the same batch file again is a
resume too: run ids are stable.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from langchain_core.language_models import BaseChatModel

from personagen.batch._checkpoints import (
    DB_URL_ENV,
    BatchError,
    is_postgres,
    resolve_store,
    without_password,
)
from personagen.batch.spec import BatchItem, BatchPlan, load_batch
from personagen.batch.summary import (
    MANIFEST,
    RUNS_DIR,
    SUMMARY,
    BatchSummary,
    ProgressCallback,
    read_json,
    write_manifest,
)
from personagen.batch.unit import ChatModelArg, ModelRef

log = logging.getLogger(__name__)

Backend = Literal["local", "ray"]
"""`local`: asyncio in this process. `ray`: actors on a Ray cluster (Postgres checkpoints)."""
BACKENDS: tuple[str, ...] = Backend.__args__  # type: ignore[attr-defined]
MANIFEST_VERSION = 1
_STORED_RAY_OPTIONS = ("address", "actors", "max_retries", "num_cpus")


@dataclass
class BatchReport:
    """What a batch produced: its folder and the content of its `batch.json`."""

    batch_id: str
    batch_dir: Path
    summary: dict[str, Any]

    @property
    def status(self) -> str:
        """`done` when every run is done, else `incomplete`."""
        return str(self.summary["status"])

    @property
    def runs(self) -> list[dict[str, Any]]:
        """Per run: id, label, status, bundle_dir, tokens, error, attempts, seconds."""
        return list(self.summary["runs"])

    @property
    def counts(self) -> dict[str, int]:
        """Runs by status: total, done, running, failed, pending, other."""
        return dict(self.summary["counts"])


@dataclass
class _Settings:
    backend: str
    out_dir: Path
    state_dir: Path
    checkpoint: str
    chat_model: ChatModelArg
    concurrency: int
    lock_timeout: float
    max_tokens: int | None
    retries: int
    ray: dict[str, Any]


def _model_record(chat_model: ChatModelArg) -> dict[str, Any] | None:
    if chat_model is None:
        return None
    if isinstance(chat_model, ModelRef):
        return chat_model.to_dict()
    return {"object": type(chat_model).__name__}


def _manifest(plan: BatchPlan, settings: _Settings) -> dict[str, Any]:
    import personagen

    return {
        "version": MANIFEST_VERSION,
        "batch_id": plan.batch_id,
        "source": str(Path(plan.source).resolve())
        if plan.source and Path(plan.source).is_file()
        else plan.source,
        "created_at": time.time(),
        "personagen_version": personagen.__version__,
        "backend": settings.backend,
        "concurrency": settings.concurrency,
        "checkpoint": without_password(settings.checkpoint),
        "state_dir": str(settings.state_dir),
        "out_dir": str(settings.out_dir),
        "chat_model": _model_record(settings.chat_model),
        "max_tokens": settings.max_tokens,
        "lock_timeout": settings.lock_timeout,
        "retries": settings.retries,
        "ray": {k: v for k, v in settings.ray.items() if k in _STORED_RAY_OPTIONS},
        "runs": [
            {"id": item.run_id, "label": item.label, "spec": item.spec.model_dump(mode="json")}
            for item in plan.items
        ],
    }


async def _dispatch(
    plan: BatchPlan,
    settings: _Settings,
    batch_dir: Path,
    *,
    previous: dict[str, Any] | None,
    progress: ProgressCallback | None,
) -> BatchReport:
    summary = BatchSummary(
        batch_dir,
        plan.batch_id,
        [(item.run_id, item.label) for item in plan.items],
        backend=settings.backend,
        on_progress=progress,
        previous=previous,
    )
    todo_ids = set(summary.pending_ids())
    todo: list[BatchItem] = [item for item in plan.items if item.run_id in todo_ids]
    summary.mark_pending([item.run_id for item in todo])
    try:
        if settings.backend == "ray":
            from personagen.batch.ray_backend import run_ray

            await run_ray(
                todo,
                summary,
                out_dir=settings.out_dir,
                state_dir=settings.state_dir,
                checkpoint=settings.checkpoint,
                chat_model=cast(ModelRef | None, settings.chat_model),  # see _check_backend
                concurrency=settings.concurrency,
                lock_timeout=settings.lock_timeout,
                max_tokens=settings.max_tokens,
                retries=settings.retries,
                **settings.ray,
            )
        else:
            from personagen.batch.local import run_local

            await run_local(
                todo,
                summary,
                out_dir=settings.out_dir,
                state_dir=settings.state_dir,
                checkpoint=settings.checkpoint,
                chat_model=settings.chat_model,
                concurrency=settings.concurrency,
                lock_timeout=settings.lock_timeout,
                max_tokens=settings.max_tokens,
                retries=settings.retries,
            )
    finally:
        final = summary.close()
    return BatchReport(batch_id=plan.batch_id, batch_dir=batch_dir, summary=final)


def _check_backend(backend: str, checkpoint: str, chat_model: ChatModelArg) -> None:
    if backend not in BACKENDS:
        raise BatchError(f"unknown backend {backend!r} (choose {' or '.join(BACKENDS)})")
    if backend == "ray":
        if not is_postgres(checkpoint):
            raise BatchError(
                "the ray backend needs Postgres checkpoints: give --db postgresql://... "
                f"(or set {DB_URL_ENV})"
            )
        if isinstance(chat_model, BaseChatModel):
            raise BatchError(
                "the ray backend cannot ship a chat model object to its workers: pass a "
                "ModelRef('package.module:factory', {...}) or set each spec's llm settings"
            )


def _ray_options(
    address: str | None,
    actors: int | None,
    max_retries: int | None,
    extra: dict[str, Any] | None,
    stored: dict[str, Any] | None = None,
) -> dict[str, Any]:
    options = dict(stored or {})
    if address is not None:
        options["address"] = address
    if actors is not None:
        options["actors"] = actors
    if max_retries is not None:
        options["max_retries"] = max_retries
    options.setdefault("address", "local")
    options.setdefault("max_retries", 3)
    return {**options, **(extra or {})}


async def arun_batch(
    batch: str | Path | BatchPlan,
    *,
    backend: Backend = "local",
    out_dir: str | Path = "out",
    state_dir: str | Path = ".personagen",
    checkpoint: str | None = None,
    concurrency: int = 8,
    chat_model: ChatModelArg = None,
    max_tokens: int | None = None,
    lock_timeout: float = 30.0,
    retries: int = 1,
    progress: ProgressCallback | None = None,
    ray_address: str | None = None,
    ray_actors: int | None = None,
    ray_max_retries: int | None = None,
    ray_options: dict[str, Any] | None = None,
) -> BatchReport:
    """Run every run of a batch (resuming those a previous attempt left unfinished).

    Args:
        batch: a batch file, or a `BatchPlan` from `parse_batch`/`load_batch`.
        backend: `local` (asyncio in this process) or `ray`.
        out_dir: the batch goes to `<out_dir>/<batch_id>/` (bundles in `runs/<run_id>/`).
        state_dir: chunk store, usage log, response cache, and the default checkpoint
            folder.
        checkpoint: a Postgres URL (`postgresql://` or `postgresql+psycopg://`), or a
            folder for one SQLite file per run; `$PERSONAGEN_BATCH_DB_URL`, else
            `<state_dir>/checkpoints/`, by default. The ray backend needs Postgres.
        concurrency: runs at once per worker process (local: this process; ray: each actor).
        chat_model: a chat model object (local backend only) or a `ModelRef`; each spec's
            `llm` settings by default.
        max_tokens: per-run token budget overriding the specs'.
        lock_timeout: seconds to wait for a run another runner holds before reporting it
            `locked` (covers workers of a crashed batch that still write for a while).
        retries: further attempts at a run that raised; each resumes from its checkpoint.
        progress: called with a `BatchProgress` after every status change and every few
            seconds while runs spend tokens.
        ray_address: "local" (start a cluster for this batch) or a cluster's address.
        ray_actors: Ray worker processes (default: the cluster's CPUs).
        ray_max_retries: restarts of a dead worker and retries of its runs (default 3).
        ray_options: more `run_ray` arguments (`num_cpus`, `runtime_env`, `init_kwargs`).

    Returns:
        The batch's folder and summary; `status` is `done` when every run is done.

    Raises:
        SpecError: the batch file is invalid (the message names the file and key).
        BatchError: the backend cannot run with these settings.
    """
    plan = batch if isinstance(batch, BatchPlan) else load_batch(batch)
    target = resolve_store(checkpoint or os.environ.get(DB_URL_ENV), state_dir)
    _check_backend(backend, target, chat_model)
    batch_dir = Path(out_dir).resolve() / plan.batch_id
    settings = _Settings(
        backend=backend,
        out_dir=batch_dir / RUNS_DIR,
        state_dir=Path(state_dir).resolve(),
        checkpoint=target,
        chat_model=chat_model,
        concurrency=concurrency,
        lock_timeout=lock_timeout,
        max_tokens=max_tokens,
        retries=retries,
        ray=_ray_options(ray_address, ray_actors, ray_max_retries, ray_options)
        if backend == "ray"
        else {},
    )
    summary_path = batch_dir / SUMMARY
    previous = read_json(summary_path, "batch summary") if summary_path.is_file() else None
    write_manifest(batch_dir, _manifest(plan, settings))
    return await _dispatch(plan, settings, batch_dir, previous=previous, progress=progress)


def run_batch(batch: str | Path | BatchPlan, **kwargs: Any) -> BatchReport:
    """Synchronous `arun_batch` (not for use inside a running event loop)."""
    return asyncio.run(arun_batch(batch, **kwargs))


def find_batch_dir(batch: str | Path, out_dir: str | Path = "out") -> Path:
    """The folder of a batch given its id (under `out_dir`), its folder, or its manifest."""
    given = Path(batch)
    for candidate in (given, given.parent if given.name in (MANIFEST, SUMMARY) else None):
        if candidate is not None and (candidate / MANIFEST).is_file():
            return candidate.resolve()
    by_id = Path(out_dir) / str(batch)
    if (by_id / MANIFEST).is_file():
        return by_id.resolve()
    raise BatchError(
        f"no batch {str(batch)!r}: neither {str(by_id / MANIFEST)!r} nor "
        f"{str(given / MANIFEST)!r} exists (give --out, or the batch folder)"
    )


def _plan_from_manifest(manifest: dict[str, Any], path: Path) -> BatchPlan:
    from personagen.specfile import parse_spec

    items = []
    for index, run in enumerate(manifest.get("runs") or []):
        try:
            run_id, label, spec = run["id"], run.get("label", run["id"]), run["spec"]
        except (KeyError, TypeError) as exc:
            raise BatchError(f"{path}: runs.{index} is not a run record") from exc
        spec = parse_spec(spec, origin=f"{path}: runs.{index}")
        items.append(BatchItem(run_id=run_id, label=label, spec=spec))
    return BatchPlan(batch_id=str(manifest["batch_id"]), items=items, source=manifest.get("source"))


async def aresume_batch(
    batch: str | Path,
    *,
    out_dir: str | Path = "out",
    backend: Backend | None = None,
    checkpoint: str | None = None,
    concurrency: int | None = None,
    chat_model: ChatModelArg = None,
    max_tokens: int | None = None,
    lock_timeout: float | None = None,
    retries: int | None = None,
    progress: ProgressCallback | None = None,
    ray_address: str | None = None,
    ray_actors: int | None = None,
    ray_max_retries: int | None = None,
    ray_options: dict[str, Any] | None = None,
) -> BatchReport:
    """Finish whatever a batch left unfinished (after a crash, a failure or a stop).

    Everything not given is taken from the batch's manifest: backend, checkpoint database,
    folders, concurrency, model reference. The manifest stores the database URL without
    its password: give `checkpoint` (or `$PERSONAGEN_BATCH_DB_URL`, `PGPASSWORD`,
    `~/.pgpass`) when the server needs one.

    Args:
        batch: the batch id (looked up under `out_dir`), its folder, or its manifest.
        out_dir: where batches live (as given to `arun_batch`).
        backend: `local` or `ray` (the manifest's by default).
        checkpoint: the checkpoint database (the manifest's, without password, by default).
        concurrency: runs at once per worker process.
        chat_model: a chat model object or `ModelRef` (the manifest's reference by default).
        max_tokens: per-run token budget overriding the specs'.
        lock_timeout: seconds to wait for a run still held by a runner of the crashed batch.
        retries: further attempts at a run that raised.
        progress: called with a `BatchProgress` after every change.
        ray_address: "local" or a cluster's address (the manifest's by default).
        ray_actors: Ray worker processes.
        ray_max_retries: restarts of a dead worker and retries of its runs.
        ray_options: more `run_ray` arguments.

    Raises:
        BatchError: no such batch, or its manifest is unreadable.
    """
    batch_dir = find_batch_dir(batch, out_dir)
    manifest_path = batch_dir / MANIFEST
    manifest = read_json(manifest_path, "batch manifest")
    if manifest.get("version") != MANIFEST_VERSION:
        raise BatchError(f"{manifest_path}: unknown manifest version {manifest.get('version')!r}")
    plan = _plan_from_manifest(manifest, manifest_path)
    chosen = backend or manifest.get("backend") or "local"
    state_dir = Path(manifest.get("state_dir") or ".personagen")
    stored = checkpoint or os.environ.get(DB_URL_ENV) or manifest.get("checkpoint")
    if not stored:
        raise BatchError(f"{manifest_path}: no checkpoint store recorded; give --db")
    target = resolve_store(stored, state_dir)
    model = chat_model
    stored_model = manifest.get("chat_model")
    if model is None and isinstance(stored_model, dict):
        if "factory" in stored_model:
            model = ModelRef.from_dict(stored_model)
        elif "object" in stored_model:
            log.warning(
                "batch %s ran with a %s object; resuming with each spec's llm settings "
                "(pass chat_model= to use the same model)",
                plan.batch_id,
                stored_model["object"],
            )
    _check_backend(chosen, target, model)
    settings = _Settings(
        backend=chosen,
        out_dir=Path(manifest.get("out_dir") or batch_dir / RUNS_DIR),
        state_dir=state_dir,
        checkpoint=target,
        chat_model=model,
        concurrency=concurrency or int(manifest.get("concurrency") or 8),
        lock_timeout=lock_timeout
        if lock_timeout is not None
        else float(manifest.get("lock_timeout") or 30.0),
        max_tokens=max_tokens if max_tokens is not None else manifest.get("max_tokens"),
        retries=retries if retries is not None else int(manifest.get("retries", 1)),
        ray=_ray_options(ray_address, ray_actors, ray_max_retries, ray_options, manifest.get("ray"))
        if chosen == "ray"
        else {},
    )
    summary_path = batch_dir / SUMMARY
    previous = read_json(summary_path, "batch summary") if summary_path.is_file() else {}
    return await _dispatch(plan, settings, batch_dir, previous=previous, progress=progress)


def resume_batch(batch: str | Path, **kwargs: Any) -> BatchReport:
    """Synchronous `aresume_batch`."""
    return asyncio.run(aresume_batch(batch, **kwargs))
