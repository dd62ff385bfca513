"""Batches of runs: many specs, or personas x data, each run checkpointed and resumable.

    report = personagen.batch.run_batch("batch.yaml", concurrency=8)
    report = personagen.batch.resume_batch(report.batch_id)   # after any crash

A batch is a list of idempotent units (`run_or_resume`): a finished run is read back, a
checkpointed one is resumed, a new one is started, and a per-run lock keeps two runners off
the same run. Backends: `local` (asyncio, one process, the default) and `ray` (actors on a
Ray cluster with Postgres checkpoints, the `ray` extra).

Names are imported on first use, so `personagen batch --help` stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_LAZY = {
    "BatchItem": "personagen.batch.spec",
    "BatchPlan": "personagen.batch.spec",
    "BatchSpec": "personagen.batch.spec",
    "load_batch": "personagen.batch.spec",
    "parse_batch": "personagen.batch.spec",
    "BatchProgress": "personagen.batch.summary",
    "BatchReport": "personagen.batch.runner",
    "arun_batch": "personagen.batch.runner",
    "aresume_batch": "personagen.batch.runner",
    "run_batch": "personagen.batch.runner",
    "resume_batch": "personagen.batch.runner",
    "ModelRef": "personagen.batch.unit",
    "run_or_resume": "personagen.batch.unit",
}

if TYPE_CHECKING:  # pragma: no cover
    from personagen.batch.runner import (  # noqa: F401
        BatchReport,
        aresume_batch,
        arun_batch,
        resume_batch,
        run_batch,
    )
    from personagen.batch.spec import (  # noqa: F401
        BatchItem,
        BatchPlan,
        BatchSpec,
        load_batch,
        parse_batch,
    )
    from personagen.batch.summary import BatchProgress  # noqa: F401
    from personagen.batch.unit import ModelRef, run_or_resume  # noqa: F401


def __getattr__(name: str) -> Any:
    """Import public names on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'personagen.batch' has no attribute {name!r}")
    return getattr(import_module(module), name)


__all__ = list(_LAZY)
