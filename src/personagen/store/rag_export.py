"""The `rag/` part of the bundle: the chosen chunking, the sources chunked with it, a README.

`rag/chunks.jsonl` is ready to load into a vector store: each line is a chunk with its exact
offsets into the source text and the ids of the accepted questions whose answer spans it
overlaps (so `qa.jsonl` doubles as a retrieval eval set over exactly these chunks).
Documents are chunked and written one at a time, so a large corpus is never held chunked
in memory.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from personagen.data.chunking import chunk_text, validate_chunking
from personagen.state.documents import DocumentRef
from personagen.state.items import QAPair
from personagen.store.bundle import write_json, write_jsonl

__all__ = ["DEFAULT_CHUNKING", "write_rag_bundle"]

DEFAULT_CHUNKING: dict[str, Any] = {
    "chunk_size": 800,
    "chunk_overlap": 120,
    "splitter": "recursive",
}
"""The qa goal's chunking; used when the sweep result names neither a choice nor a default."""

_README = """\
# RAG-ready chunks

These files come from a span-grounded sweep of chunking and retrieval settings: every
accepted answer in `../qa.jsonl` keeps the exact character spans of the source text it rests
on, so each setting was scored by how much of that text its retrieval hands back.

{summary}

## Files

- `params.json`: the chunking used for `chunks.jsonl` (`chunking`), the retrieval setting to
  use with it (`retrieval`: retriever and top_k), the objective the choice was made by, and
  the full `table` of every setting tried with its metrics (`hit_rate`, `mrr`, `span_recall`,
  `context_chars`), the settings `skipped` and why, and the sweep time (`sweep_seconds`).
  If the sweep was skipped, `status` is `"skipped"` and `reason` says why.
- `chunks.jsonl`: the source documents re-chunked with that setting, one JSON object a line:
  `id`, `text`, `doc_id`, `source`, `index` (position in its document), `start`, `end`
  (`text == document_text[start:end]`, character offsets) and `question_ids` (ids of the
  accepted questions in `qa.jsonl` whose answer spans overlap the chunk).

Metrics: `span_recall` is the share of the answers' source characters found in the
retrieved chunks; `hit_rate` the share of questions with at least one overlapping chunk;
`mrr` the mean reciprocal rank of the first overlapping chunk; `context_chars` the mean
number of characters handed to the reader.

## Load into LangChain

```python
import json
from langchain_core.documents import Document

documents = []
with open("rag/chunks.jsonl", encoding="utf-8") as handle:
    for line in handle:
        row = json.loads(line)
        documents.append(
            Document(
                id=row["id"],
                page_content=row["text"],
                metadata={{
                    "doc_id": row["doc_id"], "source": row["source"], "index": row["index"],
                    "start": row["start"], "end": row["end"],
                    # many vector stores only accept scalar metadata
                    "question_ids": ",".join(row["question_ids"]),
                }},
            )
        )
# vector_store = SomeVectorStore.from_documents(documents, embeddings)
# retriever = vector_store.as_retriever(search_kwargs={{"k": {top_k}}})
```

## Load into any vector store

```python
import json

with open("rag/chunks.jsonl", encoding="utf-8") as handle:
    rows = [json.loads(line) for line in handle]
for first in range(0, len(rows), 100):
    batch = rows[first : first + 100]
    vectors = embed([row["text"] for row in batch])  # your embedding function
    store.upsert(  # your client's upsert / add call
        ids=[row["id"] for row in batch],
        vectors=vectors,
        payloads=[{{k: v for k, v in row.items() if k != "text"}} for row in batch],
    )
```

To evaluate your own retrieval, run each question of `../qa.jsonl` through it and check the
`id`s it returns against the rows whose `question_ids` hold that question's `id`.
"""


def _chunking(rag: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The chunking to export, and where it comes from."""
    chosen = rag.get("chosen")
    if rag.get("status") == "done" and chosen:
        return {k: chosen[k] for k in ("chunk_size", "chunk_overlap", "splitter")}, "sweep"
    default = rag.get("default_chunking") or DEFAULT_CHUNKING
    return {k: default[k] for k in ("chunk_size", "chunk_overlap", "splitter")}, "goal default"


def _spans_by_doc(pairs: Sequence[QAPair]) -> dict[str, list[tuple[int, int, str]]]:
    by_doc: dict[str, list[tuple[int, int, str]]] = {}
    for pair in pairs:
        if pair.status != "accepted":
            continue
        for span in pair.spans:
            if span.start < span.end:
                by_doc.setdefault(span.doc_id, []).append((span.start, span.end, pair.id))
    return by_doc


def _chunk_rows(
    documents: Sequence[DocumentRef],
    texts: Callable[[str], str],
    chunking: dict[str, Any],
    spans: dict[str, list[tuple[int, int, str]]],
    missing: list[str],
) -> Iterator[dict[str, Any]]:
    size = int(chunking["chunk_size"])
    for ref in dict((d.id, d) for d in documents).values():
        try:
            text = texts(ref.id)
        except KeyError:
            missing.append(ref.id)
            continue
        chunks = chunk_text(
            ref.id,
            text,
            chunk_size=size,
            chunk_overlap=int(chunking["chunk_overlap"]),
            splitter=chunking["splitter"],
        )
        starts = [chunk.start for chunk in chunks]
        questions: list[list[str]] = [[] for _ in chunks]
        for start, end, question_id in spans.get(ref.id, []):
            # No chunk is longer than `size`, so one starting before `start - size` ends
            # before the span does; chunks are in start order.
            for index in range(bisect_left(starts, start - size), bisect_left(starts, end)):
                if chunks[index].end > start and question_id not in questions[index]:
                    questions[index].append(question_id)
        for chunk, question_ids in zip(chunks, questions, strict=True):
            yield {
                "id": chunk.id,
                "text": chunk.text,
                "doc_id": ref.id,
                "source": ref.source,
                "index": chunk.index,
                "start": chunk.start,
                "end": chunk.end,
                "question_ids": question_ids,
            }


def write_rag_bundle(
    directory: Path,
    rag: dict[str, Any],
    documents: list[DocumentRef],
    texts: Callable[[str], str],
    pairs: list[QAPair],
) -> dict[str, str]:
    """Write `rag/params.json`, `rag/chunks.jsonl` and `rag/README.md` under `directory`.

    Args:
        directory: The bundle directory (`rag/` is created in it).
        rag: The sweep result (`state["rag"]`, `SweepResult.to_dict()` plus
            `default_chunking`); a skipped sweep exports the default chunking.
        documents: The run's documents, chunked in this order.
        texts: Returns a document's text by id (`ChunkStore.get_text`); a KeyError leaves
            the document out (listed in params.json as `documents_missing`).
        pairs: The run's pairs; accepted ones give the chunks' `question_ids`.

    Returns:
        File name (relative to `directory`) -> path.

    Raises:
        ValueError: The chunking in `rag` is out of range.
    """
    folder = directory / "rag"
    folder.mkdir(parents=True, exist_ok=True)
    chunking, origin = _chunking(rag)
    validate_chunking(chunking["chunk_size"], chunking["chunk_overlap"], chunking["splitter"])
    missing: list[str] = []
    files: dict[str, str] = {}

    chunks_path = folder / "chunks.jsonl"
    count = write_jsonl(
        chunks_path, _chunk_rows(documents, texts, chunking, _spans_by_doc(pairs), missing)
    )
    files["rag/chunks.jsonl"] = str(chunks_path)

    chosen = rag.get("chosen") if origin == "sweep" else None
    retrieval = {"retriever": chosen["retriever"], "top_k": chosen["top_k"]} if chosen else None
    timing = rag.get("timing") or {}
    params = {
        "status": rag.get("status", "skipped"),
        "reason": rag.get("reason"),
        "chunking": {**chunking, "from": origin},
        "retrieval": retrieval,
        "objective": rag.get("objective"),
        "chosen": chosen,
        "sweep_seconds": timing.get("seconds"),
        "chunks": {"file": "chunks.jsonl", "count": count, "documents": len(documents)},
        "documents_missing": missing,
    } | {key: value for key, value in rag.items() if key not in ("status", "reason", "chosen")}
    params_path = folder / "params.json"
    write_json(params_path, params)
    files["rag/params.json"] = str(params_path)

    readme_path = folder / "README.md"
    readme_path.write_text(
        _README.format(
            summary=_summary(params, chunking, origin),
            top_k=retrieval["top_k"] if retrieval else 4,
        ),
        encoding="utf-8",
    )
    files["rag/README.md"] = str(readme_path)
    return files


def _summary(params: dict[str, Any], chunking: dict[str, Any], origin: str) -> str:
    setting = (
        f"`chunk_size` {chunking['chunk_size']}, `chunk_overlap` {chunking['chunk_overlap']}, "
        f"splitter `{chunking['splitter']}`"
    )
    chosen = params.get("chosen")
    if origin == "sweep" and chosen:
        return (
            f"Chosen: {setting}; retrieve with `{chosen['retriever']}`, top_k "
            f"{chosen['top_k']} (span recall {chosen['span_recall']:.3f}, MRR "
            f"{chosen['mrr']:.3f}, {chosen['context_chars']:.0f} characters of context on "
            f"average), out of {len(params.get('table', []))} settings tried in "
            f"{params.get('sweep_seconds')} s. {params['chunks']['count']} chunks."
        )
    return (
        f"The sweep was skipped ({params.get('reason') or 'no result'}), so the chunks use "
        f"the goal's default chunking: {setting}. {params['chunks']['count']} chunks."
    )
