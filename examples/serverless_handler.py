"""A serverless-style handler: each invocation works until its time limit, then returns.

The run checkpoints to a durable path (`state_dir`: a mounted volume, EFS, a bucket-backed
disk), so the next invocation with the same `run_id` resumes where the last one was cut off,
redoing no finished work.

    event = {"run_id": "user-42", "spec": {...}, "state_dir": "/mnt/personagen",
             "out_dir": "/mnt/personagen/out", "time_limit_s": 840}
    handler(event)  # -> {"status": "in_progress" | "done" | ..., "run_id": ..., ...}
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from personagen.api import RunResult, aresume, arun
from personagen.errors import RunNotFound


async def _work(event: dict[str, Any], chat_model: Any) -> RunResult:
    kwargs = {
        "state_dir": event.get("state_dir", "/tmp/personagen"),
        "out_dir": event.get("out_dir", Path(event.get("state_dir", "/tmp/personagen")) / "out"),
        "chat_model": chat_model,
        # Stop cleanly (everything finished is checkpointed) before the platform's hard limit.
        "time_limit": float(event.get("time_limit_s", 840)),
    }
    try:
        return await aresume(event["run_id"], **kwargs)
    except RunNotFound:
        return await arun(event["spec"], run_id=event["run_id"], **kwargs)


def handler(
    event: dict[str, Any], context: Any = None, *, chat_model: Any = None
) -> dict[str, Any]:
    """Run or resume `event["run_id"]` for at most `event["time_limit_s"]` seconds."""
    result = asyncio.run(_work(event, chat_model))
    if result.status == "interrupted":
        return {"status": "in_progress", "run_id": event["run_id"]}
    return {
        "status": result.status,
        "run_id": result.run_id,
        "bundle_dir": str(result.bundle_dir) if result.bundle_dir else None,
        "accepted": len(result.accepted),
        "tokens": result.tokens,
    }
