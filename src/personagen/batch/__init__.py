"""Batches of runs: many specs, or personas x data, each run checkpointed and resumable.

    report = personagen.batch.run_batch("batch.yaml", concurrency=8)
    report = personagen.batch.resume_batch(report.batch_id)   # after any crash

A batch is a list of idempotent units (`run_or_resume`): a finished run is read back, a
checkpointed one is resumed, a new one is started, and a per-run lock keeps two runners off
the same run. Backends: `local` (asyncio, one process, the default) and `ray` (actors on a
Ray cluster with Postgres checkpoints, the `ray` extra).
"""

from __future__ import annotations

from personagen.batch.runner import BatchReport, aresume_batch, arun_batch, resume_batch, run_batch
from personagen.batch.spec import BatchItem, BatchPlan, BatchSpec, load_batch, parse_batch
from personagen.batch.summary import BatchProgress
from personagen.batch.unit import ModelRef, run_or_resume

__all__ = [
    "BatchItem",
    "BatchPlan",
    "BatchProgress",
    "BatchReport",
    "BatchSpec",
    "ModelRef",
    "aresume_batch",
    "arun_batch",
    "load_batch",
    "parse_batch",
    "resume_batch",
    "run_batch",
    "run_or_resume",
]
