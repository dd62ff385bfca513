"""A SQLite store for document text and cached chunkings, keyed by document id.

Graph checkpoints keep only document ids (sha256 of the source bytes); the text sits here,
so checkpoints stay small and a resumed run finds the same text. Chunkings are cached per
(document, chunk_size, chunk_overlap, splitter) as offsets only, since the text is stored
once already.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from personagen.data.chunking import (
    Splitter,
    chunk_text,
    chunks_from_spans,
    validate_chunking,
)
from personagen.state.documents import Chunk, DocumentRef, LoadedDocument

__all__ = ["ChunkStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY,
    ref TEXT NOT NULL,
    text TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS chunkings (
    doc_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    chunk_size INTEGER NOT NULL,
    chunk_overlap INTEGER NOT NULL,
    splitter TEXT NOT NULL,
    spans TEXT NOT NULL,
    PRIMARY KEY (doc_id, chunk_size, chunk_overlap, splitter)
);
"""
# Chunk lists kept in memory on top of the SQLite cache; a chunking is rebuilt from stored
# offsets and text otherwise.
_MEMORY_CACHE_SIZE = 128


class ChunkStore:
    """Document text and chunk offsets in SQLite; safe to share between threads.

    Example:
        >>> with ChunkStore("run/chunks.sqlite") as store:
        ...     store.put_document(document)
        ...     chunks = store.chunks([document.ref.id], chunk_size=800, chunk_overlap=100)
    """

    def __init__(self, path: str | Path = ":memory:") -> None:
        """Open (and create if needed) a store.

        Args:
            path: A database file (its directory is created) or ":memory:".
        """
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = sqlite3.connect(self.path, check_same_thread=False)
        self._cache: OrderedDict[tuple[str, int, int, str], list[Chunk]] = OrderedDict()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.executescript(_SCHEMA)

    # --- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        """Close the database; closing twice is fine."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            self._cache.clear()

    def __enter__(self) -> ChunkStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError(f"chunk store {self.path!r} is closed")
        return self._conn

    # --- documents --------------------------------------------------------------------------

    def put_document(self, doc: LoadedDocument) -> None:
        """Store a document; storing the same document again changes nothing.

        The id is the hash of the source bytes, so the same bytes read with other options
        (another `format` or `fields`) give other text under the same id: the newer text
        replaces the older one and its cached chunkings are dropped.
        """
        ref_json = doc.ref.model_dump_json()
        with self._lock:
            db = self._db()
            row = db.execute(
                "SELECT ref, text FROM documents WHERE id = ?", (doc.ref.id,)
            ).fetchone()
            if row is not None and row[1] == doc.text:
                return
            with db:
                if row is not None:
                    db.execute("DELETE FROM chunkings WHERE doc_id = ?", (doc.ref.id,))
                    db.execute(
                        "UPDATE documents SET ref = ?, text = ? WHERE id = ?",
                        (ref_json, doc.text, doc.ref.id),
                    )
                    for key in [key for key in self._cache if key[0] == doc.ref.id]:
                        del self._cache[key]
                else:
                    # Another process (a parallel run of a batch) may have stored the same
                    # document since the SELECT: identical bytes, so keep whichever came first.
                    db.execute(
                        "INSERT INTO documents (id, ref, text) VALUES (?, ?, ?) "
                        "ON CONFLICT(id) DO NOTHING",
                        (doc.ref.id, ref_json, doc.text),
                    )

    def put_documents(self, docs: Iterable[LoadedDocument]) -> None:
        """Store several documents (see `put_document`)."""
        for doc in docs:
            self.put_document(doc)

    def __contains__(self, doc_id: object) -> bool:
        """True when a document with this id is stored."""
        with self._lock:
            row = self._db().execute("SELECT 1 FROM documents WHERE id = ?", (doc_id,)).fetchone()
        return row is not None

    def __len__(self) -> int:
        """Number of stored documents."""
        with self._lock:
            (count,) = self._db().execute("SELECT COUNT(*) FROM documents").fetchone()
        return int(count)

    def get_text(self, doc_id: str) -> str:
        """The text of a document.

        Raises:
            KeyError: No document has this id.
        """
        with self._lock:
            row = (
                self._db().execute("SELECT text FROM documents WHERE id = ?", (doc_id,)).fetchone()
            )
        if row is None:
            raise KeyError(f"no document with id {doc_id!r} in the chunk store")
        return str(row[0])

    def get_ref(self, doc_id: str) -> DocumentRef:
        """The reference (metadata) of a document.

        Raises:
            KeyError: No document has this id.
        """
        with self._lock:
            row = self._db().execute("SELECT ref FROM documents WHERE id = ?", (doc_id,)).fetchone()
        if row is None:
            raise KeyError(f"no document with id {doc_id!r} in the chunk store")
        return DocumentRef.model_validate_json(row[0])

    def documents(self) -> list[DocumentRef]:
        """References of all stored documents, in the order they were first stored."""
        with self._lock:
            rows = self._db().execute("SELECT ref FROM documents ORDER BY rowid").fetchall()
        return [DocumentRef.model_validate_json(row[0]) for row in rows]

    # --- chunks -----------------------------------------------------------------------------

    def chunks(
        self,
        doc_ids: Iterable[str],
        *,
        chunk_size: int = 1000,
        chunk_overlap: int = 150,
        splitter: Splitter = "recursive",
    ) -> list[Chunk]:
        """Chunks of the given documents, computed once per parameters and then cached.

        Args:
            doc_ids: Document ids; chunks come in this order (each document once), then in
                chunk order.
            chunk_size: See `chunk_text`.
            chunk_overlap: See `chunk_text`.
            splitter: See `chunk_text`.

        Returns:
            The chunks of all the documents.

        Raises:
            KeyError: A document id is not stored.
            ValueError: A chunking parameter is out of range.
        """
        validate_chunking(chunk_size, chunk_overlap, splitter)
        result: list[Chunk] = []
        for doc_id in dict.fromkeys(doc_ids):
            result.extend(self._chunks_of(doc_id, chunk_size, chunk_overlap, splitter))
        return result

    def _chunks_of(self, doc_id: str, size: int, overlap: int, splitter: Splitter) -> list[Chunk]:
        key = (doc_id, size, overlap, splitter)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
            row = (
                self._db()
                .execute(
                    "SELECT spans FROM chunkings WHERE doc_id = ? AND chunk_size = ? "
                    "AND chunk_overlap = ? AND splitter = ?",
                    key,
                )
                .fetchone()
            )
        text = self.get_text(doc_id)
        if row is not None:
            chunks = chunks_from_spans(doc_id, text, json.loads(row[0]))
        else:
            # Chunking runs outside the lock: it can take a while on a large document, and
            # two threads computing the same chunking store the same result.
            chunks = chunk_text(
                doc_id, text, chunk_size=size, chunk_overlap=overlap, splitter=splitter
            )
            spans = json.dumps([[chunk.start, chunk.end] for chunk in chunks])
            with self._lock:
                db = self._db()
                with db:
                    db.execute(
                        "INSERT OR REPLACE INTO chunkings "
                        "(doc_id, chunk_size, chunk_overlap, splitter, spans) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (*key, spans),
                    )
        with self._lock:
            self._cache[key] = chunks
            self._cache.move_to_end(key)
            while len(self._cache) > _MEMORY_CACHE_SIZE:
                self._cache.popitem(last=False)
        return chunks
