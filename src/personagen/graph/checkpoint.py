"""Checkpointers: SQLite on a file by default, Postgres when given a postgres:// URL."""

from __future__ import annotations

import copy
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.serde.base import maybe_add_typed_methods
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

DEFAULT_STATE_DIR = Path(".personagen")


def default_checkpoint_path(state_dir: Path = DEFAULT_STATE_DIR) -> Path:
    """Where runs are checkpointed unless told otherwise."""
    return state_dir / "checkpoints.sqlite"


def run_checkpoint_path(run_id: str, state_dir: Path = DEFAULT_STATE_DIR) -> Path:
    """Where an existing run's checkpoints are, when no target is given.

    A batch on SQLite gives every run a file of its own (`<state_dir>/checkpoints/<run>.sqlite`);
    other runs share `<state_dir>/checkpoints.sqlite`.
    """
    own = state_dir / "checkpoints" / f"{run_id}.sqlite"
    return own if own.is_file() else default_checkpoint_path(state_dir)


def serializer() -> JsonPlusSerializer:
    """A checkpoint serializer that deserializes every PersonaGen state type, nothing unknown.

    Give it to your own checkpointer (`InMemorySaver(serde=serializer())`): LangGraph's default
    serializer logs "Deserializing unregistered type personagen.state..." for each state type
    (and will block them in a future version). `compile_graph` applies it by itself.
    """
    import importlib
    import pkgutil

    import personagen.state as state_package

    allowed: list[type] = []
    for info in pkgutil.iter_modules(state_package.__path__):
        module = importlib.import_module(f"personagen.state.{info.name}")
        allowed.extend(
            obj
            for obj in vars(module).values()
            if isinstance(obj, type) and obj.__module__ == module.__name__
        )
    return JsonPlusSerializer(allowed_msgpack_modules=allowed)


def with_state_types(checkpointer: BaseCheckpointSaver[Any]) -> BaseCheckpointSaver[Any]:
    """`checkpointer` with `serializer()` if it has LangGraph's stock serializer; else as is.

    A serializer the caller chose (encrypted, strict, their own class) is theirs to keep. The
    saver is copied, not changed: it keeps its storage and connection.
    """
    if type(checkpointer.serde) is not JsonPlusSerializer:
        return checkpointer
    clone = copy.copy(checkpointer)
    clone.serde = maybe_add_typed_methods(serializer())
    return clone


@asynccontextmanager
async def server_checkpointer() -> AsyncIterator[BaseCheckpointSaver[Any]]:
    """The LangGraph server's checkpointer (langgraph.json `checkpointer.path`).

    SQLite at `$PERSONAGEN_STATE_DIR/checkpoints.sqlite` (default `.personagen`), the file
    `personagen run` uses, with `serializer()`: the server's own in-memory saver would log an
    "unregistered type" warning per state type and keep nothing across restarts.
    """
    state_dir = Path(os.environ.get("PERSONAGEN_STATE_DIR") or DEFAULT_STATE_DIR)
    async with open_checkpointer(default_checkpoint_path(state_dir)) as saver:
        yield saver


@asynccontextmanager
async def open_checkpointer(target: str | Path | None = None) -> AsyncIterator[BaseCheckpointSaver]:
    """An async checkpointer for a SQLite path, ':memory:', or a Postgres URL."""
    target = str(target if target is not None else default_checkpoint_path())
    if target.startswith(("postgres://", "postgresql://")):
        try:
            from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        except ImportError as exc:  # pragma: no cover - depends on the extra
            raise ImportError(
                "Postgres checkpoints need: pip install 'personagen[postgres]'"
            ) from exc
        async with AsyncPostgresSaver.from_conn_string(target, serde=serializer()) as saver:
            await saver.setup()
            yield saver
        return
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    if target != ":memory:":
        Path(target).parent.mkdir(parents=True, exist_ok=True)
    # Wait for a lock rather than fail at once (sqlite3's default is 5 s).
    async with aiosqlite.connect(target, timeout=60) as conn:
        # The saver switches the file to WAL. NORMAL syncs at WAL checkpoints, not at every
        # commit: a killed process loses nothing; a power cut may lose the last steps, which
        # a resume redoes. A full fsync per step costs milliseconds on the critical path.
        await conn.execute("PRAGMA synchronous=NORMAL")
        yield AsyncSqliteSaver(conn, serde=serializer())
