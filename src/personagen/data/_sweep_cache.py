"""A persistent cache of RAG sweep results, so an unchanged rerun sweeps nothing again.

Entries are per question and per chunking (or chunking and retriever): a question's
retrieval scores depend only on the chunking, the documents (all of them: they are the
distractors), the language, the retriever (with the embeddings model and ranking depth for
`embedding` and `hybrid`), the question's text and its gold spans, never on the other
questions. So a sweep over a subset of questions (the accepted pairs, after an early sweep
over every answered pair) is served from the same entries. Keys are sha256 digests of
those parts; values are JSON. One SQLite file (WAL), safe to share between threads and
processes; a cache that cannot be read or written is skipped, never fatal.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["SweepCache", "digest", "model_identity"]

log = logging.getLogger(__name__)

_SCHEMA = "CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
_BATCH = 500  # keys per SELECT (SQLite's default limit on bound variables is 32766)
VERSION = "1"
"""Bumped when what an entry holds, or how scores are computed, changes."""


def digest(*parts: Any) -> str:
    """A stable sha256 of JSON-able parts."""
    text = json.dumps([VERSION, *parts], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def model_identity(embeddings: Any) -> str:
    """What identifies an embeddings model's vectors: its class and model settings."""
    if embeddings is None:
        return "none"
    parts = [f"{type(embeddings).__module__}.{type(embeddings).__qualname__}"]
    for name in ("model", "model_name", "model_path", "dim", "dimensions", "openai_api_base"):
        value = getattr(embeddings, name, None)
        if isinstance(value, str | int | float | Path) and not isinstance(value, bool):
            parts.append(f"{name}={value}")
    return ";".join(parts)


class SweepCache:
    """Key -> JSON value entries in a SQLite file (or ":memory:")."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        """Open (and create if needed) the cache file.

        Args:
            path: A file (its directory is created) or ":memory:".
        """
        self.path = str(path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self.hits = 0
        self.misses = 0
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, check_same_thread=False, timeout=5)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(_SCHEMA)
            conn.commit()
            self._conn = conn
        except (OSError, sqlite3.Error) as exc:
            log.warning("RAG sweep cache %s cannot be opened, not used: %s", self.path, exc)

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The entries found among `keys` (missing keys are absent from the result)."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, Any] = {}
        if self._conn is None or not wanted:
            self.misses += len(wanted)
            return found
        try:
            with self._lock:
                for lo in range(0, len(wanted), _BATCH):
                    part = wanted[lo : lo + _BATCH]
                    marks = ",".join("?" * len(part))
                    rows = self._conn.execute(
                        f"SELECT key, value FROM entries WHERE key IN ({marks})",  # noqa: S608
                        part,
                    ).fetchall()
                    found.update((key, json.loads(value)) for key, value in rows)
        except (sqlite3.Error, ValueError) as exc:
            log.warning("RAG sweep cache %s cannot be read: %s", self.path, exc)
            found = {}
        self.hits += len(found)
        self.misses += len(wanted) - len(found)
        return found

    def put_many(self, entries: Mapping[str, Any]) -> None:
        """Store entries (replacing equal keys); errors are logged, not raised."""
        if self._conn is None or not entries:
            return
        rows = [(key, json.dumps(value, separators=(",", ":"))) for key, value in entries.items()]
        try:
            with self._lock:
                self._conn.executemany(
                    "INSERT OR REPLACE INTO entries (key, value) VALUES (?, ?)", rows
                )
                self._conn.commit()
        except sqlite3.Error as exc:
            log.warning("RAG sweep cache %s cannot be written: %s", self.path, exc)

    def close(self) -> None:
        """Close the file; closing twice is fine."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> SweepCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
