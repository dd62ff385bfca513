"""The data side of PersonaGen: loading sources, chunking text, retrieval, the chunk store.

`load_sources` reads the spec's data into documents, `ChunkStore` keeps their text out of
graph checkpoints, `chunk_text` splits it with exact offsets, and `BM25Index` finds the
chunks a question is about.
"""

from __future__ import annotations

from personagen.data.chunk_store import ChunkStore
from personagen.data.chunking import SPLITTERS, Splitter, chunk_text, chunks_from_spans
from personagen.data.loaders import SUPPORTED_EXTENSIONS, load_source, load_sources
from personagen.data.retrieval import BM25Index

__all__ = [
    "SPLITTERS",
    "SUPPORTED_EXTENSIONS",
    "BM25Index",
    "ChunkStore",
    "Splitter",
    "chunk_text",
    "chunks_from_spans",
    "load_source",
    "load_sources",
]
