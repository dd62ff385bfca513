"""Where a batch stands: per-run status, progress callbacks, `manifest.json` and `batch.json`.

The batch folder `<out>/<batch_id>/` holds:

- `manifest.json`, written once before any run starts: the batch id, every run's id, label
  and full spec, and how the batch was run (backend, checkpoint database without its
  password, state folder, model reference). `batch resume` needs nothing else.
- `batch.json`, rewritten (atomically) as runs progress: per run its id, status, bundle
  folder, tokens and error, plus the counts. A crash leaves the last written state.
- `runs/<run_id>/`, the bundle of each run.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from personagen.batch._checkpoints import BatchError

if TYPE_CHECKING:  # pragma: no cover
    from personagen.api import RunResult

MANIFEST = "manifest.json"
SUMMARY = "batch.json"
RUNS_DIR = "runs"

FINISHED_OK = "done"
"""The one status a resumed batch skips: every other status is worked on again."""


@dataclass
class RunRecord:
    """One run's line in `batch.json`."""

    id: str
    label: str
    status: str = "pending"
    bundle_dir: str | None = None
    tokens: int = 0
    error: str | None = None
    attempts: int = 0
    seconds: float | None = None


@dataclass
class BatchProgress:
    """Counts across the batch, passed to the progress callback after every change."""

    batch_id: str
    total: int
    done: int
    running: int
    failed: int
    pending: int
    other: int
    """Runs that stopped short of done without failing: locked, waiting for review, ..."""
    tokens: int
    """Tokens spent so far: finished runs, plus what running runs have reported."""
    run_id: str | None = None
    """The run whose change triggered this report (None for periodic reports)."""
    status: str | None = None
    """That run's new status."""

    @property
    def finished(self) -> int:
        """Runs no longer pending or running."""
        return self.total - self.pending - self.running


ProgressCallback = Callable[[BatchProgress], None]


def _atomic_write(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2, ensure_ascii=False)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_manifest(batch_dir: Path, manifest: dict[str, Any]) -> None:
    """Write the batch's manifest (atomically)."""
    _atomic_write(batch_dir / MANIFEST, manifest)


def read_json(path: Path, what: str) -> dict[str, Any]:
    """Read a batch JSON file, or raise `BatchError` naming it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise BatchError(f"{what} {str(path)!r} does not exist") from exc
    except (OSError, ValueError) as exc:
        raise BatchError(f"{what} {str(path)!r} cannot be read: {exc}") from exc
    if not isinstance(data, dict):
        raise BatchError(f"{what} {str(path)!r} does not hold a JSON object")
    return data


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


class BatchSummary:
    """Tracks every run's status, reports progress, and keeps `batch.json` up to date.

    Thread-safe: backends may report from callbacks on other threads. `batch.json` is
    rewritten at most every `write_interval` seconds while runs change, and on `close`.
    """

    def __init__(
        self,
        batch_dir: Path,
        batch_id: str,
        runs: list[tuple[str, str]],
        *,
        backend: str,
        on_progress: ProgressCallback | None = None,
        previous: dict[str, Any] | None = None,
        write_interval: float = 1.0,
    ) -> None:
        """Start tracking.

        Args:
            batch_dir: the batch folder (`batch.json` goes there).
            batch_id: the batch's id.
            runs: (run id, label) of every run, in batch order.
            backend: which backend runs the batch (recorded).
            on_progress: called with a `BatchProgress` after every change.
            previous: an earlier `batch.json`, whose records (statuses, attempts) carry over.
            write_interval: least seconds between two rewrites of `batch.json`.
        """
        self.batch_dir = batch_dir
        self.batch_id = batch_id
        self.backend = backend
        self.on_progress = on_progress
        self.write_interval = write_interval
        self._lock = threading.RLock()
        self._live_tokens: dict[str, int] = {}
        self._started: dict[str, float] = {}
        self._last_write = 0.0
        self._dirty = False
        earlier = {r["id"]: r for r in (previous or {}).get("runs", []) if "id" in r}
        self.records: dict[str, RunRecord] = {}
        for run_id, label in runs:
            record = RunRecord(id=run_id, label=label)
            old = earlier.get(run_id)
            if old is not None:
                record.status = str(old.get("status", "pending"))
                record.bundle_dir = old.get("bundle_dir")
                record.tokens = int(old.get("tokens") or 0)
                record.error = old.get("error")
                record.attempts = int(old.get("attempts") or 0)
                record.seconds = old.get("seconds")
                if record.status == "running":
                    record.status = "interrupted"  # the process running it is gone
            self.records[run_id] = record
        self.started_at = float((previous or {}).get("started_at") or time.time())
        self.resumed = previous is not None

    # -- changes ----------------------------------------------------------------------------

    def pending_ids(self) -> list[str]:
        """Runs not yet done, in batch order (what a resumed batch works on)."""
        with self._lock:
            return [r.id for r in self.records.values() if r.status != FINISHED_OK]

    def mark_pending(self, run_ids: list[str]) -> None:
        """Mark the runs about to be dispatched as pending."""
        with self._lock:
            for run_id in run_ids:
                self.records[run_id].status = "pending"
        self.write(force=True)

    def started(self, run_id: str) -> None:
        """A runner took up the run."""
        with self._lock:
            record = self.records[run_id]
            record.status = "running"
            record.attempts += 1
            record.error = None
            self._started[run_id] = time.monotonic()
        self._changed(run_id)

    def finished(self, result: RunResult) -> None:
        """The unit returned (done, locked, waiting for review, budget exhausted, ...)."""
        self.record_outcome(
            result.run_id,
            status=result.status,
            bundle_dir=str(result.bundle_dir) if result.bundle_dir else None,
            tokens=result.tokens,
            error=result.reason if result.status != FINISHED_OK else None,
        )

    def failed(self, run_id: str, error: BaseException | str) -> None:
        """The unit raised (after any retries)."""
        text = error if isinstance(error, str) else _error_text(error)
        self.record_outcome(run_id, status="failed", error=text)

    def record_outcome(
        self,
        run_id: str,
        *,
        status: str,
        bundle_dir: str | None = None,
        tokens: int | None = None,
        error: str | None = None,
    ) -> None:
        """Record how a run ended up (any backend)."""
        with self._lock:
            record = self.records[run_id]
            record.status = status
            if bundle_dir is not None:
                record.bundle_dir = bundle_dir
            if tokens is not None:
                record.tokens = max(int(tokens), self._live_tokens.get(run_id, 0))
            record.error = error
            self._live_tokens.pop(run_id, None)
            began = self._started.pop(run_id, None)
            if began is not None:
                record.seconds = round(time.monotonic() - began, 3)
        self._changed(run_id)

    def live_tokens(self, tokens: dict[str, int]) -> None:
        """Tokens spent so far by running runs (reported periodically by the backend)."""
        with self._lock:
            for run_id, count in tokens.items():
                record = self.records.get(run_id)
                if record is not None and record.status == "running":
                    self._live_tokens[run_id] = int(count)
        self._notify(None)

    def running_ids(self) -> list[str]:
        """Runs being worked on now."""
        with self._lock:
            return [r.id for r in self.records.values() if r.status == "running"]

    # -- reporting --------------------------------------------------------------------------

    def progress(self, run_id: str | None = None) -> BatchProgress:
        """The counts now."""
        with self._lock:
            statuses = [r.status for r in self.records.values()]
            tokens = sum(r.tokens for r in self.records.values() if r.status != "running")
            tokens += sum(self._live_tokens.values())
            known = {"done", "running", "failed", "pending"}
            return BatchProgress(
                batch_id=self.batch_id,
                total=len(statuses),
                done=statuses.count("done"),
                running=statuses.count("running"),
                failed=statuses.count("failed"),
                pending=statuses.count("pending"),
                other=sum(1 for s in statuses if s not in known),
                tokens=tokens,
                run_id=run_id,
                status=self.records[run_id].status if run_id else None,
            )

    def _notify(self, run_id: str | None) -> None:
        if self.on_progress is not None:
            self.on_progress(self.progress(run_id))

    def _changed(self, run_id: str) -> None:
        self.write()
        self._notify(run_id)

    def to_dict(self, *, final: bool = False) -> dict[str, Any]:
        """The content of `batch.json`."""
        with self._lock:
            counts = self.progress()
            if counts.pending or counts.running:
                status = "running" if not final else "incomplete"
            else:
                status = "done" if counts.done == counts.total else "incomplete"
            return {
                "batch_id": self.batch_id,
                "status": status,
                "backend": self.backend,
                "started_at": self.started_at,
                "updated_at": time.time(),
                "finished_at": time.time() if final else None,
                "resumed": self.resumed,
                "counts": {
                    "total": counts.total,
                    "done": counts.done,
                    "running": counts.running,
                    "failed": counts.failed,
                    "pending": counts.pending,
                    "other": counts.other,
                },
                "tokens": counts.tokens,
                "runs": [asdict(r) for r in self.records.values()],
            }

    def write(self, *, force: bool = False, final: bool = False) -> None:
        """Rewrite `batch.json`, unless it was written less than `write_interval` ago.

        A skipped write leaves the summary dirty; `flush` (called periodically by the
        backends) writes it, so `batch.json` lags by at most a few seconds.
        """
        with self._lock:
            now = time.monotonic()
            if not (force or final) and now - self._last_write < self.write_interval:
                self._dirty = True
                return
            self._last_write = now
            self._dirty = False
            _atomic_write(self.batch_dir / SUMMARY, self.to_dict(final=final))

    def flush(self) -> None:
        """Write `batch.json` if a change has not been written yet."""
        with self._lock:
            if self._dirty:
                self.write(force=True)

    def close(self) -> dict[str, Any]:
        """Write the final `batch.json` and return it."""
        with self._lock:
            for record in self.records.values():
                if record.status == "running":
                    record.status = "interrupted"
            self.write(final=True)
            return self.to_dict(final=True)
