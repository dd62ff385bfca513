"""Checkpointers: SQLite on a file by default, Postgres when given a postgres:// URL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from langgraph.checkpoint.base import BaseCheckpointSaver

DEFAULT_STATE_DIR = Path(".personagen")


def default_checkpoint_path(state_dir: Path = DEFAULT_STATE_DIR) -> Path:
    """Where runs are checkpointed unless told otherwise."""
    return state_dir / "checkpoints.sqlite"


@asynccontextmanager
async def open_checkpointer(target: str | Path | None = None) -> AsyncIterator[BaseCheckpointSaver]:
    """An async checkpointer for a SQLite path, ':memory:', or a Postgres URL."""
    target = str(target if target is not None else default_checkpoint_path())
    if target.startswith(("postgres://", "postgresql://")):
        try:
            from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        except ImportError as exc:  # pragma: no cover - depends on the extra
            raise ImportError("Postgres checkpoints need: pip install 'personagen[postgres]'") from exc
        async with AsyncPostgresSaver.from_conn_string(target) as saver:
            await saver.setup()
            yield saver
        return
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    if target != ":memory:":
        Path(target).parent.mkdir(parents=True, exist_ok=True)
    async with AsyncSqliteSaver.from_conn_string(target) as saver:
        yield saver
