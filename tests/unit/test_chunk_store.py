"""ChunkStore: round trips through SQLite files and memory, caching, threads, errors."""

from __future__ import annotations

import hashlib
import sqlite3
import threading

import pytest

from personagen.data import ChunkStore, chunk_text
from personagen.state.documents import DocumentRef, LoadedDocument


def make_doc(text: str, source: str = "inline:t") -> LoadedDocument:
    raw = text.encode()
    ref = DocumentRef(
        id=hashlib.sha256(raw).hexdigest(),
        source=source,
        kind="inline",
        format="txt",
        bytes=len(raw),
        chars=len(text),
        title="T",
    )
    return LoadedDocument(ref=ref, text=text)


DOC_A = make_doc("Alpha paragraph one.\n\n" * 40, "inline:a")
DOC_B = make_doc("Beta sentence. " * 60, "inline:b")


def test_roundtrip_on_a_file(tmp_path):
    path = tmp_path / "nested" / "chunks.sqlite"
    with ChunkStore(path) as store:
        store.put_document(DOC_A)
        store.put_document(DOC_B)
        store.put_document(DOC_A)  # idempotent
        assert len(store) == 2
        assert store.get_text(DOC_A.ref.id) == DOC_A.text
        assert store.get_ref(DOC_B.ref.id) == DOC_B.ref
        assert store.documents() == [DOC_A.ref, DOC_B.ref]
        assert DOC_A.ref.id in store
        assert "missing" not in store
        chunks = store.chunks([DOC_A.ref.id, DOC_B.ref.id], chunk_size=100, chunk_overlap=10)
    expected = chunk_text(DOC_A.ref.id, DOC_A.text, chunk_size=100, chunk_overlap=10)
    expected += chunk_text(DOC_B.ref.id, DOC_B.text, chunk_size=100, chunk_overlap=10)
    assert chunks == expected

    # Reopened, the text and the cached chunking are still there.
    with ChunkStore(path) as store:
        assert store.documents() == [DOC_A.ref, DOC_B.ref]
        again = store.chunks([DOC_A.ref.id, DOC_B.ref.id], chunk_size=100, chunk_overlap=10)
        assert again == expected
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT COUNT(*) FROM chunkings").fetchone()[0] == 2


def test_memory_store_and_splitter_variants():
    with ChunkStore(":memory:") as store:
        store.put_documents([DOC_A, DOC_B])
        for splitter in ("recursive", "markdown", "sentence"):
            chunks = store.chunks([DOC_B.ref.id], chunk_size=50, chunk_overlap=5, splitter=splitter)
            assert chunks == chunk_text(
                DOC_B.ref.id, DOC_B.text, chunk_size=50, chunk_overlap=5, splitter=splitter
            )
            assert all(DOC_B.text[c.start : c.end] == c.text for c in chunks)


def test_cached_chunking_is_reused_without_rechunking(tmp_path, monkeypatch):
    path = tmp_path / "c.sqlite"
    with ChunkStore(path) as store:
        store.put_document(DOC_A)
        first = store.chunks([DOC_A.ref.id], chunk_size=64, chunk_overlap=8)
    import personagen.data.chunk_store as module

    def fail(*args, **kwargs):
        raise AssertionError("chunk_text called for a cached chunking")

    monkeypatch.setattr(module, "chunk_text", fail)
    with ChunkStore(path) as store:
        assert store.chunks([DOC_A.ref.id], chunk_size=64, chunk_overlap=8) == first
        assert store.chunks([DOC_A.ref.id, DOC_A.ref.id], chunk_size=64, chunk_overlap=8) == first


def test_missing_ids_raise_key_error_naming_the_id():
    with ChunkStore() as store:
        for call in (store.get_text, store.get_ref):
            with pytest.raises(KeyError, match="nope"):
                call("nope")
        with pytest.raises(KeyError, match="nope"):
            store.chunks(["nope"])


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [({"chunk_size": 0}, "chunk_size"), ({"chunk_overlap": 5000}, "chunk_overlap")],
)
def test_bad_chunking_parameters(kwargs, parameter):
    with ChunkStore() as store:
        store.put_document(DOC_A)
        with pytest.raises(ValueError, match=parameter):
            store.chunks([DOC_A.ref.id], **kwargs)


def test_same_id_with_new_text_replaces_and_drops_cached_chunks():
    with ChunkStore() as store:
        store.put_document(DOC_A)
        old = store.chunks([DOC_A.ref.id], chunk_size=50, chunk_overlap=0)
        changed = LoadedDocument(ref=DOC_A.ref, text="Different extraction of the same bytes.")
        store.put_document(changed)
        assert store.get_text(DOC_A.ref.id) == changed.text
        new = store.chunks([DOC_A.ref.id], chunk_size=50, chunk_overlap=0)
        assert new != old
        assert [c.text for c in new] == ["Different extraction of the same bytes."]


def test_closed_store_refuses_work():
    store = ChunkStore()
    store.close()
    store.close()  # twice is fine
    with pytest.raises(RuntimeError, match="closed"):
        store.get_text("x")


def test_threads_share_one_store(tmp_path):
    docs = [make_doc(f"Document {i}. " * 200, f"inline:{i}") for i in range(8)]
    errors: list[BaseException] = []
    with ChunkStore(tmp_path / "t.sqlite") as store:

        def work(doc: LoadedDocument) -> None:
            try:
                for _ in range(5):
                    store.put_document(doc)
                    store.chunks([doc.ref.id], chunk_size=100, chunk_overlap=20)
                    store.documents()
            except BaseException as exc:  # collected and re-raised in the main thread
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(doc,)) for doc in docs for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        assert len(store) == 8
        for doc in docs:
            assert store.chunks([doc.ref.id], chunk_size=100, chunk_overlap=20) == chunk_text(
                doc.ref.id, doc.text, chunk_size=100, chunk_overlap=20
            )
