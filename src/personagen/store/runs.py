"""The run store: every run's status, usage, scores, items, events and bundle files, in SQL.

One SQLAlchemy schema serves SQLite (the default, a file under `.personagen/`) and
PostgreSQL (`postgresql+psycopg://...`, from the `postgres` extra). The tables are created on
first use and re-creating them is a no-op, so any number of processes can open one store.

    store = RunStore()  # $PERSONAGEN_DB_URL, else sqlite:///.personagen/runs.sqlite
    store.record_start(run_id, spec)
    store.record_finish(run_id, metadata, pairs, files)
    store.list_runs(status="done"), store.get_run(run_id)

Numbers are copied from the bundle's metadata.json as they are, so what the store says equals
what the bundle says. Recording a run again replaces its child rows (idempotent).

SQLite takes one writer at a time. Writers in one process (the runs of a batch, each with
its own store, recording from worker threads) queue on a lock per database file, so they
never wait on SQLite's own lock: its busy handler polls, favours no one and gives up after a
timeout, which a queue of writers in one busy process can outlast ("database is locked").
Writers in other processes wait on SQLite's lock, up to `SQLITE_BUSY_TIMEOUT`. Readers are
not held up (WAL).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.pool import StaticPool

from personagen.errors import PersonaGenError, RunNotFound
from personagen.state.items import QAPair
from personagen.state.spec import RunSpec
from personagen.store._redact import redact, redact_url

logger = logging.getLogger(__name__)

DB_URL_ENV = "PERSONAGEN_DB_URL"
DEFAULT_DB_URL = "sqlite:///.personagen/runs.sqlite"
_PG_LOCK = 0x706572736F6E61  # advisory lock key held while creating the schema ("persona")
TERMINAL_STATUSES = frozenset({"done", "failed", "budget_exhausted", "interrupted", "cancelled"})
SQLITE_BUSY_TIMEOUT = 60.0
"""Seconds a SQLite writer waits for another process's write to end before failing."""

_write_locks: dict[str, threading.RLock] = {}
_write_locks_guard = threading.Lock()


def _write_lock(key: str) -> threading.RLock:
    """The lock this process's writers of one SQLite database queue on."""
    with _write_locks_guard:
        return _write_locks.setdefault(key, threading.RLock())


class RunStoreError(PersonaGenError):
    """The run store cannot be opened or used; the message names the (password-free) URL."""


class UnknownRun(RunStoreError, RunNotFound):
    """The run id is not in the run store."""


# --------------------------------------------------------------------------------------------
# Schema


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone; this restores it)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Store UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Read back as aware UTC."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    """Declarative base of the run-store tables."""

    type_annotation_map = {dict[str, Any]: JSONType, list[Any]: JSONType, datetime: UTCDateTime}


class RunRow(Base):
    """One run: what it was asked to do and how it ended."""

    __tablename__ = "personagen_runs"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    status: Mapped[str] = mapped_column(String(32), index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    goal: Mapped[str | None] = mapped_column(String(500))
    persona_name: Mapped[str | None] = mapped_column(String(200))
    provider: Mapped[str | None] = mapped_column(String(32))
    model: Mapped[str | None] = mapped_column(String(500))
    started_at: Mapped[datetime | None] = mapped_column(index=True)
    ended_at: Mapped[datetime | None]
    runtime_seconds: Mapped[float | None] = mapped_column(Float)
    iterations: Mapped[int | None] = mapped_column(Integer)
    llm_calls: Mapped[int] = mapped_column(Integer, default=0)
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    total_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cache_hits: Mapped[int] = mapped_column(Integer, default=0)
    baseline_met: Mapped[bool | None] = mapped_column(Boolean)
    questions: Mapped[int | None] = mapped_column(Integer)
    accepted: Mapped[int | None] = mapped_column(Integer)
    rejected: Mapped[int | None] = mapped_column(Integer)
    unanswerable: Mapped[int | None] = mapped_column(Integer)
    bundle_dir: Mapped[str | None] = mapped_column(Text)
    personagen_version: Mapped[str | None] = mapped_column(String(64))
    spec: Mapped[dict[str, Any] | None] = mapped_column(comment="The run spec, secrets removed.")
    baseline: Mapped[dict[str, Any] | None]
    final_scores: Mapped[dict[str, Any] | None]
    counts: Mapped[dict[str, Any] | None]
    recommendations: Mapped[list[Any] | None]
    updated_at: Mapped[datetime | None]
    host: Mapped[str | None] = mapped_column(String(255), comment="Host of the driving process.")
    pid: Mapped[int | None] = mapped_column(Integer, comment="Process id driving the run.")
    state_dir: Mapped[str | None] = mapped_column(Text, comment="Where its state and lock are.")
    out_dir: Mapped[str | None] = mapped_column(Text, comment="Where its bundle is written.")


_ADDED_COLUMNS = ("host", "pid", "state_dir", "out_dir")
"""Run columns added after the first release: stores created before get them on open."""
_ADDED_ITERATION_COLUMNS = ("unverified",)


def _run_fk() -> Mapped[str]:
    return mapped_column(
        String(128), ForeignKey("personagen_runs.id", ondelete="CASCADE"), index=True
    )


class StageRow(Base):
    """Time and model usage of one node in one iteration (fan-out runs summed)."""

    __tablename__ = "personagen_stages"
    __table_args__ = (UniqueConstraint("run_id", "node", "iteration"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = _run_fk()
    node: Mapped[str] = mapped_column(String(100))
    iteration: Mapped[int] = mapped_column(Integer)
    runs: Mapped[int] = mapped_column(Integer)
    started: Mapped[float] = mapped_column(Float, comment="Unix time of the first execution.")
    seconds: Mapped[float] = mapped_column(Float)
    llm_calls: Mapped[int] = mapped_column(Integer)
    input_tokens: Mapped[int] = mapped_column(Integer)
    output_tokens: Mapped[int] = mapped_column(Integer)
    cache_hits: Mapped[int] = mapped_column(Integer)
    retries: Mapped[int] = mapped_column(Integer)
    repairs: Mapped[int] = mapped_column(Integer)


class TokenUsageRow(Base):
    """Calls and tokens per model."""

    __tablename__ = "personagen_token_usage"
    __table_args__ = (UniqueConstraint("run_id", "model"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = _run_fk()
    model: Mapped[str] = mapped_column(String(500))
    calls: Mapped[int] = mapped_column(Integer)
    input_tokens: Mapped[int] = mapped_column(Integer)
    output_tokens: Mapped[int] = mapped_column(Integer)
    seconds: Mapped[float] = mapped_column(Float)
    cache_hits: Mapped[int] = mapped_column(Integer)
    cost_usd: Mapped[float | None] = mapped_column(Float)


class IterationRow(Base):
    """The outcome of one tuning-loop pass."""

    __tablename__ = "personagen_iterations"
    __table_args__ = (UniqueConstraint("run_id", "iteration"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = _run_fk()
    iteration: Mapped[int] = mapped_column(Integer)
    accepted: Mapped[int] = mapped_column(Integer)
    unverified: Mapped[int | None] = mapped_column(Integer)
    failing: Mapped[int] = mapped_column(Integer)
    unanswerable: Mapped[int] = mapped_column(Integer)
    baseline_met: Mapped[bool] = mapped_column(Boolean)
    shortfalls: Mapped[list[Any]]


class ScoreRow(Base):
    """The mean of one metric in one iteration."""

    __tablename__ = "personagen_scores"
    __table_args__ = (UniqueConstraint("run_id", "iteration", "metric"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = _run_fk()
    iteration: Mapped[int] = mapped_column(Integer)
    metric: Mapped[str] = mapped_column(String(100))
    value: Mapped[float] = mapped_column(Float)


class ItemRow(Base):
    """One Q/A pair with its judgements."""

    __tablename__ = "personagen_items"
    __table_args__ = (UniqueConstraint("run_id", "item_id"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = _run_fk()
    item_id: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(32), index=True)
    origin: Mapped[str] = mapped_column(String(32))
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)
    answerable: Mapped[bool | None] = mapped_column(Boolean)
    iteration: Mapped[int] = mapped_column(Integer)
    scores: Mapped[dict[str, Any]]
    reasons: Mapped[list[Any]] = mapped_column(comment="Why it was reworked or rejected.")
    judge_reasons: Mapped[dict[str, Any]]
    violations: Mapped[list[Any]]
    spans: Mapped[list[Any]]


class EventRow(Base):
    """A warning or error, with the item it concerns."""

    __tablename__ = "personagen_events"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = _run_fk()
    seq: Mapped[int] = mapped_column(Integer)
    level: Mapped[str] = mapped_column(String(16))
    stage: Mapped[str] = mapped_column(String(100))
    message: Mapped[str] = mapped_column(Text)
    item_id: Mapped[str | None] = mapped_column(String(128))


class ArtifactRow(Base):
    """One file of the run's output bundle."""

    __tablename__ = "personagen_artifacts"
    __table_args__ = (UniqueConstraint("run_id", "name"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = _run_fk()
    name: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(Text)
    bytes: Mapped[int | None] = mapped_column(Integer)
    sha256: Mapped[str | None] = mapped_column(String(64))


_CHILDREN: tuple[type[Base], ...] = (
    StageRow,
    TokenUsageRow,
    IterationRow,
    ScoreRow,
    ItemRow,
    EventRow,
    ArtifactRow,
)

# --------------------------------------------------------------------------------------------
# Views: plain pydantic models, detached from any session


class StageView(BaseModel):
    """One node in one iteration."""

    node: str
    iteration: int
    runs: int
    seconds: float
    llm_calls: int
    input_tokens: int
    output_tokens: int
    cache_hits: int
    retries: int
    repairs: int


class TokenUsageView(BaseModel):
    """Usage of one model."""

    model: str
    calls: int
    input_tokens: int
    output_tokens: int
    seconds: float
    cache_hits: int
    cost_usd: float | None = None


class IterationView(BaseModel):
    """Scores and counts at the end of one iteration."""

    iteration: int
    scores: dict[str, float]
    accepted: int
    unverified: int = 0
    failing: int
    unanswerable: int
    baseline_met: bool
    shortfalls: list[str]


class ItemView(BaseModel):
    """One Q/A pair."""

    id: str
    status: str
    origin: str
    question: str
    answer: str
    answerable: bool | None
    iteration: int
    scores: dict[str, float]
    reasons: list[str]
    judge_reasons: dict[str, str]
    violations: list[dict[str, Any]]
    spans: list[dict[str, Any]]


class EventView(BaseModel):
    """A warning or an error."""

    level: str
    stage: str
    message: str
    item_id: str | None


class ArtifactView(BaseModel):
    """A bundle file."""

    name: str
    path: str
    bytes: int | None
    sha256: str | None


class RunSummary(BaseModel):
    """A run as `runs list` shows it."""

    id: str
    status: str
    reason: str | None = None
    goal: str | None = None
    persona: str | None = None
    provider: str | None = None
    model: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    runtime_seconds: float | None = None
    iterations: int | None = None
    llm_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cache_hits: int = 0
    baseline_met: bool | None = None
    questions: int | None = None
    accepted: int | None = None
    rejected: int | None = None
    unanswerable: int | None = None
    bundle_dir: str | None = None


class RunDetail(RunSummary):
    """Everything the store knows about one run."""

    personagen_version: str | None = None
    spec: dict[str, Any] | None = None
    baseline: dict[str, float] = Field(default_factory=dict)
    final_scores: dict[str, float] = Field(default_factory=dict)
    counts: dict[str, Any] = Field(default_factory=dict)
    recommendations: list[dict[str, Any]] = Field(default_factory=list)
    stages: list[StageView] = Field(default_factory=list)
    token_usage: list[TokenUsageView] = Field(default_factory=list)
    scores: list[IterationView] = Field(default_factory=list)
    items: list[ItemView] = Field(default_factory=list)
    events: list[EventView] = Field(default_factory=list)
    artifacts: list[ArtifactView] = Field(default_factory=list)

    @property
    def warnings(self) -> list[EventView]:
        """Events of level warning."""
        return [e for e in self.events if e.level == "warning"]

    @property
    def errors(self) -> list[EventView]:
        """Events of level error."""
        return [e for e in self.events if e.level == "error"]


# --------------------------------------------------------------------------------------------
# The store


def default_db_url(state_dir: str | Path | None = None) -> str:
    """`$PERSONAGEN_DB_URL`, else `runs.sqlite` in `state_dir` (default `.personagen/`)."""
    if os.environ.get(DB_URL_ENV):
        return os.environ[DB_URL_ENV]
    if state_dir is None:
        return DEFAULT_DB_URL
    return f"sqlite:///{Path(state_dir) / 'runs.sqlite'}"


def _normalize_url(raw: str) -> URL:
    """Parse a database URL; bare postgres URLs get the psycopg 3 driver."""
    text = raw.strip()
    if text.startswith("postgres://"):
        text = "postgresql://" + text[len("postgres://") :]
    try:
        url = make_url(text)
    except ArgumentError as exc:
        raise RunStoreError(
            f"bad database URL {redact_url(raw)!r}: expected e.g. sqlite:///path/runs.sqlite "
            "or postgresql+psycopg://user@host/db"
        ) from exc
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise RunStoreError(
            f"unsupported database {url.get_backend_name()!r} in "
            f"{url.render_as_string(hide_password=True)!r}: use sqlite:/// or postgresql+psycopg://"
        )
    return url


def _utc(timestamp: Any) -> datetime | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(float(timestamp), tz=UTC)


def _file_facts(path: str) -> tuple[int | None, str | None]:
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None, None
    return len(data), hashlib.sha256(data).hexdigest()


def _stage_rows(run_id: str, stages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Sum the stage runs of each (node, iteration): fan-out tasks are one stage per pass."""
    table: dict[tuple[str, int], dict[str, Any]] = {}
    for stage in stages:
        key = (str(stage["node"]), int(stage.get("iteration", 0)))
        row = table.setdefault(
            key,
            {
                "run_id": run_id,
                "node": key[0],
                "iteration": key[1],
                "runs": 0,
                "started": float(stage.get("started", 0.0)),
                "seconds": 0.0,
                "llm_calls": 0,
                "input_tokens": 0,
                "output_tokens": 0,
                "cache_hits": 0,
                "retries": 0,
                "repairs": 0,
            },
        )
        row["runs"] += 1
        row["started"] = min(row["started"], float(stage.get("started", row["started"])))
        row["seconds"] += float(stage.get("seconds", 0.0))
        for name in ("llm_calls", "input_tokens", "output_tokens", "cache_hits"):
            row[name] += int(stage.get(name, 0))
        row["retries"] += int(stage.get("retries", 0))
        row["repairs"] += int(stage.get("repairs", 0))
    return list(table.values())


def _clean(value: Any) -> Any:
    """Replace NUL characters, which PostgreSQL text and jsonb cannot hold, on every backend."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _item_row(run_id: str, pair: QAPair) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "item_id": pair.id,
        "status": pair.status,
        "origin": pair.origin,
        "question": pair.question,
        "answer": pair.answer,
        "answerable": pair.answerable,
        "iteration": pair.iteration,
        "scores": dict(pair.scores),
        "reasons": list(pair.feedback),
        "judge_reasons": dict(pair.reasons),
        "violations": [v.model_dump(mode="json") for v in pair.violations],
        "spans": [s.model_dump(mode="json") for s in pair.spans],
    }


def _logged_usage(state_dir: str | None, run_id: str) -> dict[str, int] | None:
    """A run's totals from the usage log in its state directory, if there is one."""
    if state_dir is None or not (Path(state_dir) / "usage.sqlite").is_file():
        return None
    from personagen.llm.usage import UsageLog

    try:
        log = UsageLog(Path(state_dir) / "usage.sqlite")
    except Exception:  # noqa: BLE001 - bookkeeping of a dead run is best effort
        return None
    try:
        return log.totals(run_id)
    except Exception:  # noqa: BLE001
        return None
    finally:
        log.close()


def _add_missing_columns(conn: Any) -> None:
    """Add the run columns a store created by an older version lacks (nullable, no data)."""
    from sqlalchemy import inspect

    for model, names in (
        (RunRow, _ADDED_COLUMNS),
        (IterationRow, _ADDED_ITERATION_COLUMNS),
        (TokenUsageRow, ("cost_usd",)),
    ):
        table = Base.metadata.tables[model.__tablename__]
        present = {c["name"] for c in inspect(conn).get_columns(table.name)}
        for name in names:
            if name in present:
                continue
            kind = table.columns[name].type.compile(dialect=conn.dialect)
            try:
                with conn.begin_nested():
                    conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {name} {kind}"))
            except SQLAlchemyError as exc:
                if "duplicate column" not in str(exc) and "already exists" not in str(exc):
                    raise  # another process adding it at the same moment is fine


class RunStore:
    """Records runs in SQLite or PostgreSQL and reads them back as plain views."""

    def __init__(self, url: str | None = None, *, echo: bool = False) -> None:
        """Open (lazily) the store at `url`, `$PERSONAGEN_DB_URL`, or the default SQLite file."""
        self.url: URL = _normalize_url(url or default_db_url())
        self.display_url = self.url.render_as_string(hide_password=True)
        self._echo = echo
        self._engine: Engine | None = None
        self._sessions: sessionmaker[Session] | None = None
        self._lock = threading.Lock()
        self._writes: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if self.url.get_backend_name() == "sqlite":
            database = self.url.database
            if database in (None, "", ":memory:"):
                self._writes = threading.RLock()  # one in-memory database per store
            else:
                self._writes = _write_lock(str(Path(database).expanduser().resolve()))

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the connection pool."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
            self._sessions = None

    def _make_engine(self) -> Engine:
        url = self.url
        kwargs: dict[str, Any] = {"echo": self._echo}
        if url.get_backend_name() == "sqlite":
            # Threads: the async API records from worker threads.
            kwargs["connect_args"] = {
                "check_same_thread": False,
                "timeout": SQLITE_BUSY_TIMEOUT,
            }
            if url.database in (None, "", ":memory:"):
                kwargs["poolclass"] = StaticPool  # one shared in-memory database
            else:
                folder = Path(url.database).expanduser().parent
                try:
                    folder.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise RunStoreError(
                        f"cannot open the run store {self.display_url!r}: cannot create "
                        f"{str(folder)!r} ({exc.strerror or exc})"
                    ) from exc
        else:
            kwargs["pool_pre_ping"] = True
            kwargs["connect_args"] = {"connect_timeout": 10}
        try:
            engine = create_engine(url, **kwargs)
        except (NoSuchModuleError, ImportError) as exc:
            hint = (
                " (pip install 'personagen[postgres]')"
                if url.get_backend_name() == "postgresql"
                else ""
            )
            raise RunStoreError(
                f"no database driver for {self.display_url!r}: {exc}{hint}"
            ) from exc
        if url.get_backend_name() == "sqlite":

            @event.listens_for(engine, "connect")
            def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
                cursor = dbapi_conn.cursor()
                cursor.execute("PRAGMA foreign_keys=ON")
                cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT * 1000)}")
                if url.database not in (None, "", ":memory:"):
                    cursor.execute("PRAGMA journal_mode=WAL")
                cursor.close()

        return engine

    def setup(self) -> None:
        """Create the tables if they are missing (idempotent; safe from several processes)."""
        with self._lock:
            if self._engine is not None:
                return
            engine = self._make_engine()
            for attempt in range(3):
                try:
                    with self._writes, engine.begin() as conn:
                        if engine.dialect.name == "postgresql":
                            # Serialize concurrent creators; the lock ends with the transaction.
                            conn.execute(
                                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK}
                            )
                        Base.metadata.create_all(conn, checkfirst=True)
                        _add_missing_columns(conn)
                    break
                except SQLAlchemyError as exc:
                    # Two processes creating the same table at once: the loser retries and
                    # then finds it. Anything else (bad host, bad password) fails at once.
                    already = "already exists" in str(exc) or "duplicate key" in str(exc)
                    if not already or attempt == 2:
                        engine.dispose()
                        raise RunStoreError(
                            f"cannot open the run store {self.display_url!r}: "
                            f"{str(getattr(exc, 'orig', None) or exc).strip().splitlines()[0]}"
                        ) from exc
                    time.sleep(0.1 * (attempt + 1))
            self._engine = engine
            self._sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def _session(self, *, write: bool = False) -> Iterator[Session]:
        self.setup()
        assert self._sessions is not None
        try:
            with (
                self._writes if write else contextlib.nullcontext(),
                self._sessions.begin() as session,
            ):
                yield session
        except RunStoreError:
            raise
        except SQLAlchemyError as exc:
            raise RunStoreError(
                f"run store {self.display_url!r}: "
                f"{str(getattr(exc, 'orig', None) or exc).strip().splitlines()[0]}"
            ) from exc

    @staticmethod
    def _run_row(session: Session, run_id: str) -> RunRow:
        row = session.get(RunRow, run_id)
        if row is None:
            row = RunRow(id=run_id, status="running")
            session.add(row)
        return row

    # -- writes ------------------------------------------------------------------------------

    def record_start(
        self,
        run_id: str,
        spec: RunSpec,
        *,
        owner: tuple[str, int] | None = None,
        state_dir: str | Path | None = None,
        out_dir: str | Path | None = None,
    ) -> None:
        """Record that a run started (or resumed) with this spec; secrets are not stored.

        Args:
            run_id: the run.
            spec: its spec.
            owner: (host, pid) of the process driving it, for `mark_stale_runs`.
            state_dir: its state directory (where its lock file is).
            out_dir: where its bundle is written.
        """
        now = datetime.now(UTC)
        with self._session(write=True) as session:
            row = self._run_row(session, run_id)
            if owner is not None:
                row.host, row.pid = owner
            if state_dir is not None:
                row.state_dir = str(state_dir)
            if out_dir is not None:
                row.out_dir = str(out_dir)
            row.status = "running"
            row.reason = None
            row.ended_at = None
            row.runtime_seconds = None
            row.started_at = row.started_at or now  # a resumed run keeps its first start
            row.goal = spec.goal.name
            row.persona_name = spec.persona.name
            row.provider = spec.llm.provider
            row.model = row.model or spec.llm.model or spec.llm.model_path or spec.llm.provider
            row.spec = _clean(redact(spec.model_dump(mode="json")))
            row.updated_at = now

    def record_status(
        self,
        run_id: str,
        status: str,
        reason: str | None = None,
        *,
        usage: Mapping[str, Any] | None = None,
    ) -> None:
        """Set a run's status; a terminal status also sets its end time and runtime.

        `usage` (the usage log's totals: calls, input/output/total tokens, cache hits) records
        what the run really spent so far, for runs that stop before their bundle is written.
        """
        now = datetime.now(UTC)
        with self._session(write=True) as session:
            row = self._run_row(session, run_id)
            if usage:
                row.llm_calls = int(usage.get("llm_calls", usage.get("calls", row.llm_calls or 0)))
                row.input_tokens = int(usage.get("input_tokens", row.input_tokens or 0))
                row.output_tokens = int(usage.get("output_tokens", row.output_tokens or 0))
                row.total_tokens = int(usage.get("total_tokens", row.total_tokens or 0))
                row.cache_hits = int(usage.get("cache_hits", row.cache_hits or 0))
            row.started_at = row.started_at or now  # first seen now, if never started here
            row.status = status
            row.reason = _clean(reason)
            row.updated_at = now
            if status in TERMINAL_STATUSES:
                row.ended_at = row.ended_at or now
                if row.started_at is not None and row.runtime_seconds is None:
                    row.runtime_seconds = round((row.ended_at - row.started_at).total_seconds(), 3)
            else:
                row.ended_at = None

    def record_finish(
        self,
        run_id: str,
        metadata: Mapping[str, Any],
        pairs: Sequence[QAPair],
        files: Mapping[str, str],
        *,
        bundle_dir: str | Path | None = None,
    ) -> None:
        """Record a finished run from its metadata.json, its pairs and its bundle files.

        Idempotent: recording the same run again replaces every child row.
        """
        usage = metadata.get("usage", {})
        totals = usage.get("totals", {})
        counts = metadata.get("counts", {})
        if bundle_dir is None and files:
            bundle_dir = os.path.commonpath([str(Path(p).parent) for p in files.values()])
        artifacts = []
        for name, path in sorted(files.items()):
            size, digest = _file_facts(path)
            artifacts.append(
                {"run_id": run_id, "name": name, "path": path, "bytes": size, "sha256": digest}
            )
        children: list[tuple[type[Base], list[dict[str, Any]]]] = [
            (StageRow, _stage_rows(run_id, metadata.get("stages", []))),
            (
                TokenUsageRow,
                [
                    {
                        "run_id": run_id,
                        "model": model,
                        "calls": int(row.get("calls", 0)),
                        "input_tokens": int(row.get("input_tokens", 0)),
                        "output_tokens": int(row.get("output_tokens", 0)),
                        "seconds": float(row.get("seconds", 0.0)),
                        "cache_hits": int(row.get("cache_hits", 0)),
                        "cost_usd": row.get("cost_usd"),
                    }
                    for model, row in usage.get("per_model", {}).items()
                ],
            ),
            (
                IterationRow,
                [
                    {
                        "run_id": run_id,
                        "iteration": int(r["iteration"]),
                        "accepted": int(r.get("accepted", 0)),
                        "unverified": int(r.get("unverified", 0)),
                        "failing": int(r.get("failing", 0)),
                        "unanswerable": int(r.get("unanswerable", 0)),
                        "baseline_met": bool(r.get("baseline_met", False)),
                        "shortfalls": list(r.get("shortfalls", [])),
                    }
                    for r in metadata.get("scores_per_iteration", [])
                ],
            ),
            (
                ScoreRow,
                [
                    {
                        "run_id": run_id,
                        "iteration": int(r["iteration"]),
                        "metric": metric,
                        "value": float(value),
                    }
                    for r in metadata.get("scores_per_iteration", [])
                    for metric, value in r.get("scores", {}).items()
                ],
            ),
            (ItemRow, [_item_row(run_id, p) for p in {p.id: p for p in pairs}.values()]),
            (
                EventRow,
                [
                    {
                        "run_id": run_id,
                        "seq": seq,
                        "level": e.get("level", "warning"),
                        "stage": e.get("stage", ""),
                        "message": e.get("message", ""),
                        "item_id": e.get("item"),
                    }
                    for seq, e in enumerate(
                        [*metadata.get("warnings", []), *metadata.get("errors", [])]
                    )
                ],
            ),
            (ArtifactRow, artifacts),
        ]
        now = datetime.now(UTC)
        with self._session(write=True) as session:
            row = self._run_row(session, run_id)
            row.status = str(metadata.get("status", "done"))
            row.reason = None
            row.model = metadata.get("model") or row.model
            row.started_at = _utc(metadata.get("started_at")) or row.started_at
            row.ended_at = _utc(metadata.get("ended_at")) or now
            row.runtime_seconds = metadata.get("runtime_seconds")
            row.iterations = metadata.get("iterations")
            row.llm_calls = int(totals.get("llm_calls", 0))
            row.input_tokens = int(totals.get("input_tokens", 0))
            row.output_tokens = int(totals.get("output_tokens", 0))
            row.total_tokens = int(totals.get("total_tokens", row.input_tokens + row.output_tokens))
            row.cache_hits = int(totals.get("cache_hits", 0))
            row.baseline_met = metadata.get("baseline_met")
            row.questions = counts.get("questions")
            row.accepted = counts.get("accepted")
            row.rejected = counts.get("rejected")
            row.unanswerable = counts.get("unanswerable")
            row.bundle_dir = str(bundle_dir) if bundle_dir is not None else row.bundle_dir
            row.personagen_version = metadata.get("personagen_version")
            row.baseline = dict(metadata.get("baseline", {}))
            row.final_scores = dict(metadata.get("final_scores", {}))
            row.counts = _clean(dict(counts))
            row.recommendations = _clean(list(metadata.get("recommendations", [])))
            row.updated_at = now
            session.flush()
            for model in _CHILDREN:
                session.execute(delete(model).where(model.run_id == run_id))  # type: ignore[attr-defined]
            for model, rows in children:
                if rows:
                    session.execute(insert(model), _clean(rows))

    def mark_stale_runs(self) -> list[str]:
        """Mark `interrupted` every `running` run whose process is gone; return their ids.

        A run's process holds its lock file while it drives the run (see
        `personagen.store.run_records`); a free lock, or a recorded process id that no longer
        exists on this host, means the process died (kill -9, crash, power loss) without
        recording an end. Runs of other hosts, or without a recorded owner, are left alone.
        """
        from personagen.store.run_records import process_state

        with self._session() as session:
            running = [
                (r.id, r.state_dir, r.host, r.pid)
                for r in session.scalars(select(RunRow).where(RunRow.status == "running"))
            ]
        stale = []
        for run_id, state_dir, host, pid in running:
            if host is None and state_dir is None:
                continue  # recorded by an older version: nothing to check against
            if process_state(run_id, state_dir, host, pid) != "dead":
                continue
            usage = _logged_usage(state_dir, run_id)
            with self._session(write=True) as session:
                row = session.get(RunRow, run_id)
                if row is None or row.status != "running":
                    continue  # it ended (or resumed and ended) meanwhile
                if process_state(run_id, state_dir, host, pid) != "dead":
                    continue  # resumed meanwhile
                who = f"pid {pid}" + (f" on {host}" if host else "") if pid else "its process"
                row.status = "interrupted"
                if usage:  # what the dead process really spent, from its durable call log
                    row.llm_calls = usage["llm_calls"]
                    row.input_tokens = usage["input_tokens"]
                    row.output_tokens = usage["output_tokens"]
                    row.total_tokens = usage["total_tokens"]
                    row.cache_hits = usage["cache_hits"]
                row.reason = (
                    f"{who} ended without finishing; resume with: personagen resume {run_id}"
                )
                now = datetime.now(UTC)
                row.ended_at = row.updated_at or now
                if row.started_at is not None and row.runtime_seconds is None:
                    row.runtime_seconds = round((row.ended_at - row.started_at).total_seconds(), 3)
                row.updated_at = now
            stale.append(run_id)
        return stale

    def delete_run(self, run_id: str) -> None:
        """Forget a run and everything recorded about it."""
        with self._session(write=True) as session:
            for model in _CHILDREN:
                session.execute(delete(model).where(model.run_id == run_id))  # type: ignore[attr-defined]
            if session.execute(delete(RunRow).where(RunRow.id == run_id)).rowcount == 0:  # type: ignore[attr-defined]
                raise UnknownRun(f"run {run_id!r} is not in the run store {self.display_url}")

    async def arecord(
        self,
        method: Literal["record_start", "record_status", "record_finish", "mark_stale_runs"],
        *args: Any,
        **kwargs: Any,
    ) -> bool:
        """Call a `record_*` method in a worker thread; log a `RunStoreError`, never raise it.

        For the run driver: a run must not fail because its bookkeeping did.
        """
        try:
            await asyncio.to_thread(getattr(self, method), *args, **kwargs)
        except RunStoreError as exc:
            logger.warning("run store: %s failed: %s", method, exc)
            return False
        return True

    # -- reads -------------------------------------------------------------------------------

    @staticmethod
    def _summary_fields(row: RunRow) -> dict[str, Any]:
        return {
            "id": row.id,
            "status": row.status,
            "reason": row.reason,
            "goal": row.goal,
            "persona": row.persona_name,
            "provider": row.provider,
            "model": row.model,
            "started_at": row.started_at,
            "ended_at": row.ended_at,
            "runtime_seconds": row.runtime_seconds,
            "iterations": row.iterations,
            "llm_calls": row.llm_calls or 0,
            "input_tokens": row.input_tokens or 0,
            "output_tokens": row.output_tokens or 0,
            "total_tokens": row.total_tokens or 0,
            "cache_hits": row.cache_hits or 0,
            "baseline_met": row.baseline_met,
            "questions": row.questions,
            "accepted": row.accepted,
            "rejected": row.rejected,
            "unanswerable": row.unanswerable,
            "bundle_dir": row.bundle_dir,
        }

    def list_runs(self, limit: int = 50, status: str | None = None) -> list[RunSummary]:
        """The most recent runs first, optionally only those with `status`."""
        query = select(RunRow)
        if status is not None:
            query = query.where(RunRow.status == status)
        query = query.order_by(RunRow.started_at.desc().nulls_last(), RunRow.id.desc())
        query = query.limit(max(0, limit))
        with self._session() as session:
            return [RunSummary(**self._summary_fields(r)) for r in session.scalars(query)]

    def count_runs(self, status: str | None = None) -> int:
        """How many runs are recorded (with `status`, if given)."""
        query = select(func.count()).select_from(RunRow)
        if status is not None:
            query = query.where(RunRow.status == status)
        with self._session() as session:
            return int(session.scalar(query) or 0)

    def get_run(self, run_id: str) -> RunDetail:
        """Everything recorded about one run; `UnknownRun` if it is not in the store."""
        with self._session() as session:
            row = session.get(RunRow, run_id)
            if row is None:
                raise UnknownRun(f"run {run_id!r} is not in the run store {self.display_url}")

            def rows(model: Any, *order: Any) -> list[Any]:
                return list(
                    session.scalars(select(model).where(model.run_id == run_id).order_by(*order))
                )

            scores: dict[int, dict[str, float]] = {}
            for s in rows(ScoreRow, ScoreRow.iteration, ScoreRow.pk):
                scores.setdefault(s.iteration, {})[s.metric] = s.value
            return RunDetail(
                **self._summary_fields(row),
                personagen_version=row.personagen_version,
                spec=row.spec,
                baseline=row.baseline or {},
                final_scores=row.final_scores or {},
                counts=row.counts or {},
                recommendations=row.recommendations or [],
                stages=[
                    StageView.model_validate(s, from_attributes=True)
                    for s in rows(StageRow, StageRow.started, StageRow.pk)
                ],
                token_usage=[
                    TokenUsageView.model_validate(t, from_attributes=True)
                    for t in rows(TokenUsageRow, TokenUsageRow.pk)
                ],
                scores=[
                    IterationView(
                        iteration=i.iteration,
                        scores=scores.get(i.iteration, {}),
                        accepted=i.accepted,
                        unverified=i.unverified or 0,
                        failing=i.failing,
                        unanswerable=i.unanswerable,
                        baseline_met=i.baseline_met,
                        shortfalls=list(i.shortfalls or []),
                    )
                    for i in rows(IterationRow, IterationRow.iteration)
                ],
                items=[
                    ItemView(
                        id=i.item_id,
                        status=i.status,
                        origin=i.origin,
                        question=i.question,
                        answer=i.answer,
                        answerable=i.answerable,
                        iteration=i.iteration,
                        scores=i.scores or {},
                        reasons=list(i.reasons or []),
                        judge_reasons=i.judge_reasons or {},
                        violations=list(i.violations or []),
                        spans=list(i.spans or []),
                    )
                    for i in rows(ItemRow, ItemRow.pk)
                ],
                events=[
                    EventView(level=e.level, stage=e.stage, message=e.message, item_id=e.item_id)
                    for e in rows(EventRow, EventRow.seq)
                ],
                artifacts=[
                    ArtifactView(name=a.name, path=a.path, bytes=a.bytes, sha256=a.sha256)
                    for a in rows(ArtifactRow, ArtifactRow.name)
                ],
            )
