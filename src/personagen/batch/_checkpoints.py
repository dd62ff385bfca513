"""Checkpoint stores for batches: URL forms, one-time setup, and a Postgres connection pool.

A batch keeps its checkpoints in Postgres (one database for every worker and machine) or, on
one machine, in a folder of SQLite files, one per run. One file per run rather than one
shared file: LangGraph's SQLite saver holds its write transaction across an `await`, so
with many runs on one busy event loop, writers on a shared file wait past SQLite's busy
timeout ("database is locked"); per-run files never contend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from personagen.errors import PersonaGenError

DB_URL_ENV = "PERSONAGEN_BATCH_DB_URL"
"""Environment variable naming the checkpoint database (also how Ray workers receive it)."""


class BatchError(PersonaGenError):
    """A batch cannot start or resume; the message names the file, URL or run concerned."""


def is_postgres(target: str | Path | None) -> bool:
    """True for a Postgres URL (libpq form)."""
    return str(target or "").startswith(("postgres://", "postgresql://"))


def normalize_checkpoint(target: str | Path | None) -> str | None:
    """A checkpoint target as `open_checkpointer` takes it.

    Accepts a SQLite path, `sqlite:///path`, a libpq URL, or a SQLAlchemy-style URL such as
    `postgresql+psycopg://...` (the driver part is dropped). None stays None (the default
    SQLite file in the state directory).
    """
    if target is None:
        return None
    text = str(target).strip()
    if not text:
        return None
    scheme, sep, rest = text.partition("://")
    if not sep:
        return text
    base = scheme.split("+", 1)[0].lower()
    if base in ("postgres", "postgresql"):
        return f"postgresql://{rest}"
    if base == "sqlite":
        path = rest[1:] if rest.startswith("/") else rest
        return path or ":memory:"
    raise BatchError(
        f"checkpoint {redact(text)!r}: use a SQLite path or a postgresql:// URL (got {scheme}://)"
    )


_SQLITE_SUFFIXES = (".sqlite", ".sqlite3", ".db")


def resolve_store(checkpoint: str | Path | None, state_dir: str | Path) -> str:
    """Where a batch keeps its checkpoints: a libpq Postgres URL, or an absolute folder.

    Args:
        checkpoint: a Postgres URL (libpq or `postgresql+psycopg://`), a folder, or
            `sqlite:///folder`; None for `<state_dir>/checkpoints/`.
        state_dir: the batch's state folder.

    Raises:
        BatchError: a single SQLite file was given (a batch needs a folder), or an
            unsupported URL.
    """
    target = normalize_checkpoint(checkpoint)
    if target is None:
        return str(Path(state_dir).resolve() / "checkpoints")
    if is_postgres(target):
        return target
    folder = Path(target)
    if target == ":memory:" or folder.suffix.lower() in _SQLITE_SUFFIXES or folder.is_file():
        raise BatchError(
            f"checkpoint {target!r}: a batch keeps one SQLite file per run, so give a folder "
            "(or a postgresql:// URL), not a file"
        )
    return str(folder.resolve())


def run_checkpoint(store: str, run_id: str) -> str:
    """The checkpoint target of one run in a batch store (see `resolve_store`)."""
    if is_postgres(store):
        return store
    return str(Path(store) / f"{run_id}.sqlite")


def redact(target: str | None) -> str:
    """The target with any password masked, for messages."""
    from personagen.store._redact import redact_url

    return redact_url(target) if target and "://" in target else str(target)


def without_password(target: str | None) -> str | None:
    """The URL without its password, to be written to disk.

    libpq then takes the password from `PGPASSWORD` or `~/.pgpass`, or the caller passes the
    full URL again.
    """
    if not target or not is_postgres(target):
        return target
    parts = urlsplit(target)
    if "@" not in parts.netloc:
        return target
    userinfo, host = parts.netloc.rsplit("@", 1)
    netloc = f"{userinfo.split(':', 1)[0]}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


async def prepare_checkpoint(target: str) -> None:
    """Create the checkpoint tables once, before any run starts (a folder: create it).

    LangGraph's Postgres `setup()` runs its migrations without a lock, so many runners
    calling it at once on a fresh database race; after this, every later `setup()` finds
    the migrations done and changes nothing.
    """
    if not is_postgres(target):
        Path(target).mkdir(parents=True, exist_ok=True)
        return
    try:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    except ImportError as exc:  # pragma: no cover - depends on the extra
        raise BatchError("Postgres checkpoints need: pip install 'personagen[postgres]'") from exc
    import psycopg

    try:
        async with AsyncPostgresSaver.from_conn_string(target) as saver:
            await saver.setup()
    except psycopg.Error as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BatchError(f"cannot open the checkpoint database {redact(target)}: {reason}") from exc


async def open_pool(target: str, *, max_size: int) -> Any:
    """An open `psycopg_pool.AsyncConnectionPool` configured as `AsyncPostgresSaver` needs."""
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    pool: Any = AsyncConnectionPool(
        target,
        min_size=1,
        max_size=max(2, max_size),
        open=False,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
    )
    await pool.open(wait=True, timeout=30)
    return pool


def pool_saver(pool: Any) -> Any:
    """A LangGraph `AsyncPostgresSaver` on a shared pool, for one run.

    Runs of a batch process share the pool (a few connections, not one per run) but not the
    saver: an `AsyncPostgresSaver` holds a lock across each of its queries, so runs sharing
    one saver would wait on each other's checkpoint writes. A saver is a small object; it
    takes a connection from the pool per query and needs no closing.
    """
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    from personagen.graph.checkpoint import serializer

    return AsyncPostgresSaver(pool, serde=serializer())
