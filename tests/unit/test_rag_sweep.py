"""The RAG sweep (choice on corpora where the right chunking is known), its export and node."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest
from langgraph.runtime import Runtime

from personagen.data.chunk_store import ChunkStore
from personagen.data.chunking import chunk_text
from personagen.data.rag_sweep import (
    ChunkingParams,
    EvalItem,
    SettingRow,
    SweepCache,
    SweepGrid,
    _chunk_corpus,
    _Item,
    _Lexicon,
    _stopwords,
    _tokens,
    choose,
    restrict,
    sweep,
)
from personagen.data.retrieval import BM25Index
from personagen.graph.context import RunContext
from personagen.llm.factory import make_llm_client
from personagen.llm.fake import FakeEmbeddings
from personagen.nodes.optimize_rag import optimize_rag
from personagen.state.documents import DocumentRef, LoadedDocument, Span
from personagen.state.goal import ResolvedGoal
from personagen.state.items import PersonaProfile, QAPair
from personagen.state.spec import LLMSettings
from personagen.store.rag_export import write_rag_bundle

# --- corpora with a known best chunking -------------------------------------------------


class Builder:
    """Builds a text while recording the offsets of marked pieces."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.size = 0

    def add(self, piece: str) -> tuple[int, int]:
        start = self.size
        self.parts.append(piece)
        self.size += len(piece)
        return start, self.size

    @property
    def text(self) -> str:
        return "".join(self.parts)


def item(doc_id: str, text: str, question_id: str, question: str, start: int, end: int):
    return EvalItem(
        question_id=question_id,
        question=question,
        spans=[Span(doc_id=doc_id, start=start, end=end, text=text[start:end])],
    )


def sections_corpus(count: int = 12) -> tuple[dict[str, str], list[EvalItem]]:
    """Markdown sections of two ~130-char paragraphs; each answer spans the paragraph break.

    A section (~275 chars) fits a 512 chunk but not a 256 one, and only the markdown
    splitter keeps sections whole (recursive and sentence packing cut across sections).
    """
    b = Builder()
    spans = []
    for t in range(count):
        key = f"zorvex{t}"
        b.add(f"## Pump {t}\n\n")
        b.add(f"The {key} pump serves cooling line {t} in hall {t}. Its housing is cast iron. ")
        start, _ = b.add("Operators log its running hours at the end of every shift.")
        b.add("\n\n")
        _, end = b.add(f"Before a restart of {key} the seal is flushed for ten minutes.")
        b.add(f" The guard of {key} is refitted by a technician who signs the log sheet.\n\n")
        spans.append((t, key, start, end))
    text = b.text
    items = [
        item("manual", text, f"q{t}", f"When are {key} hours logged and what before restart?", s, e)
        for t, key, s, e in spans
    ]
    return {"manual": text}, items


def facts_corpus(count: int = 40) -> tuple[dict[str, str], list[EvalItem]]:
    """One short fact a paragraph: every chunking finds it, the smallest hands over least."""
    b = Builder()
    items = []
    for t in range(count):
        key = f"kx{t}q"
        start, end = b.add(f"The {key} valve opens at {t + 2} bar.")
        b.add("\n\n")
        items.append((f"f{t}", f"At what pressure does the {key} valve open?", start, end))
    text = b.text
    return {"facts": text}, [item("facts", text, *row) for row in items]


def test_sections_corpus_chooses_markdown_chunks_that_hold_whole_sections() -> None:
    documents, items = sections_corpus()
    result = sweep(documents, items, early_stop=False)
    assert result.status == "done"
    chosen = result.chosen
    assert chosen is not None
    assert (chosen.splitter, chosen.chunk_size, chosen.chunk_overlap) == ("markdown", 512, 0)
    assert (chosen.retriever, chosen.top_k) == ("bm25", 1)
    assert chosen.span_recall == 1.0 and chosen.mrr == 1.0
    # 256-character chunks cut answers in two: top-1 gets part of them.
    for row in result.table:
        if row.chunk_size == 256 and row.top_k == 1:
            assert row.span_recall < 1.0
    # The whole default grid ran: 3 sizes x 2 overlaps x 3 splitters x 3 top_k, bm25 only.
    assert result.settings_evaluated == result.settings_planned == 54
    assert result.skipped == []
    assert result.retrievers == ["bm25"]


def test_facts_corpus_chooses_small_chunks_at_equal_recall() -> None:
    documents, items = facts_corpus()
    result = sweep(documents, items, early_stop=False)
    chosen = result.chosen
    assert chosen is not None
    assert (chosen.chunk_size, chosen.top_k) == (256, 1)
    assert chosen.span_recall == 1.0
    full_recall_at_1024 = [
        r for r in result.table if r.chunk_size == 1024 and r.top_k == 1 and r.span_recall == 1
    ]
    assert full_recall_at_1024, "larger chunks find the facts too..."
    assert all(r.context_chars > 3 * chosen.context_chars for r in full_recall_at_1024)


def test_overlap_recovers_spans_cut_at_chunk_boundaries() -> None:
    # One paragraph of sentences: chunk boundaries fall inside answers unless chunks overlap.
    b = Builder()
    rows = []
    for t in range(30):
        b.add(f"Unit {t} handles routine traffic on weekdays. ")
        start, end = b.add(f"The qz{t} gateway needs firmware {t}.4 and a reboot. ")
        b.add("Logs rotate nightly on every node. ")
        rows.append(
            (f"o{t}", f"Which firmware and reboot does the qz{t} gateway need?", start, end)
        )
    text = b.text
    items = [item("plain", text, *row) for row in rows]
    grid = SweepGrid(
        chunk_sizes=[256], overlap_fractions=[0, 0.5], splitters=["recursive"], top_k=[1]
    )
    result = sweep({"plain": text}, items, grid=grid)
    by_overlap = {row.chunk_overlap: row for row in result.table}
    assert by_overlap[0].span_recall < 1.0
    assert by_overlap[128].span_recall > by_overlap[0].span_recall
    assert result.chosen is not None and result.chosen.chunk_overlap == 128


# --- lexical ranking equals BM25Index ---------------------------------------------------


@pytest.mark.parametrize("splitter", ["recursive", "markdown", "sentence"])
def test_bm25_ranking_matches_bm25index(splitter: str) -> None:
    documents, items = sections_corpus(8)
    facts, fact_items = facts_corpus(10)
    documents |= facts
    questions = [i.question for i in items + fact_items] + ["", "the of and", "pump PUMP pump"]
    stopwords = _stopwords("en")
    prepared = [
        _Item(str(n), q, Counter(_tokens(q, stopwords)), []) for n, q in enumerate(questions)
    ]
    terms = set().union(*(p.terms for p in prepared))
    lexicon = _Lexicon(documents, list(documents), terms, stopwords)
    params = ChunkingParams(chunk_size=200, chunk_overlap=30, splitter=splitter)
    chunking = _chunk_corpus(documents, list(documents), params, baseline=False)
    ranked = lexicon.rank(chunking, prepared, 5)
    chunks = [
        c
        for doc_id, text in documents.items()
        for c in chunk_text(doc_id, text, chunk_size=200, chunk_overlap=30, splitter=splitter)
    ]
    index = BM25Index(chunks)
    doc_ids = list(documents)
    for question, ranking in zip(questions, ranked, strict=True):
        expected = [(c.doc_id, c.start, c.end) for c, _ in index.search(question, 5)]
        got = [
            (doc_ids[chunking.doc[i]], int(chunking.start[i]), int(chunking.end[i]))
            for i in ranking
        ]
        assert got == expected, question


def test_bm25_ranking_with_chunks_out_of_end_order_matches_bm25index() -> None:
    import numpy as np

    from personagen.data.rag_sweep import _Chunking
    from personagen.state.documents import Chunk

    text = "pump valve seal. " * 5 + "valve gasket torque. " * 5 + "seal flush pump pump. " * 5
    # Sentence boundaries: 17 chars each, then 21 from 85, then 22 from 190.
    spans = [(0, len(text)), (17, 68), (34, 127), (85, 106), (106, 212), (169, 300)]
    chunking = _Chunking(
        params=ChunkingParams(chunk_size=400, chunk_overlap=0),
        doc=np.zeros(len(spans), dtype=np.int32),
        start=np.array([a for a, _ in spans], dtype=np.int64),
        end=np.array([b for _, b in spans], dtype=np.int64),
    )
    chunks = [
        Chunk(id=f"t:{a}-{b}", doc_id="t", index=i, start=a, end=b, text=text[a:b])
        for i, (a, b) in enumerate(spans)
    ]
    stopwords = _stopwords("en")
    questions = ["pump seal", "valve torque", "gasket", "flush the pump"]
    prepared = [_Item(q, q, Counter(_tokens(q, stopwords)), []) for q in questions]
    lexicon = _Lexicon({"t": text}, ["t"], set().union(*(p.terms for p in prepared)), stopwords)
    index = BM25Index(chunks)
    for question, ranking in zip(questions, lexicon.rank(chunking, prepared, 6), strict=True):
        expected = [(c.start, c.end) for c, _ in index.search(question, 6)]
        assert [spans[i] for i in ranking] == expected, question


# --- bounds, retrievers and edge cases --------------------------------------------------


def test_no_eval_items_skips_with_reason() -> None:
    result = sweep({"d": "Some text here."}, [])
    assert result.status == "skipped"
    assert "nothing to measure" in (result.reason or "")
    assert result.chosen is None and result.table == []
    json.dumps(result.to_dict())


def test_spans_of_absent_documents_are_dropped_and_counted() -> None:
    documents, items = facts_corpus(5)
    stray = EvalItem(
        question_id="stray",
        question="What is elsewhere?",
        spans=[Span(doc_id="gone", start=0, end=5, text="xxxxx")],
    )
    mixed = items[0].model_copy(update={"spans": [*items[0].spans, *stray.spans]})
    result = sweep(documents, [mixed, *items[1:], stray])
    assert result.status == "done"
    assert result.evaluation.questions == 5
    assert result.evaluation.spans_missing_document == 2
    assert result.evaluation.dropped == [
        {"question_id": "stray", "reason": "its spans' documents are not among the swept documents"}
    ]
    only_stray = sweep(documents, [stray])
    assert only_stray.status == "skipped"


def test_blank_documents_skip() -> None:
    result = sweep({"d": "  \n\n "}, [])
    assert result.status == "skipped" and "no document text" in (result.reason or "")


def test_tiny_document() -> None:
    text = "Boil for 3 minutes."
    result = sweep({"t": text}, [item("t", text, "q", "How long to boil?", 0, len(text))])
    assert result.status == "done"
    assert result.chosen is not None
    assert result.chosen.span_recall == 1.0 and result.chosen.top_k == 1
    assert result.chosen.context_chars == len(text)


def test_spans_are_clipped_and_empty_ones_dropped() -> None:
    text = "Alpha beta gamma."
    spans = [
        Span(doc_id="t", start=6, end=99, text="beta gamma."),
        Span(doc_id="t", start=40, end=50, text=""),
    ]
    result = sweep({"t": text}, [EvalItem(question_id="q", question="beta?", spans=spans)])
    assert result.evaluation.spans == 1 and result.evaluation.spans_empty == 1
    assert result.chosen is not None and result.chosen.span_recall == 1.0


def test_offsets_survive_lowercasing_that_changes_length() -> None:
    # "İ".lower() is two characters: token positions must stay those of the original text.
    text = "İİİİ İstanbul office. " * 3 + "The zeta relay sits in rack nine."
    start = text.index("The zeta")
    result = sweep(
        {"t": text}, [item("t", text, "q", "Where is the zeta relay?", start, len(text))]
    )
    assert result.chosen is not None and result.chosen.span_recall == 1.0


def test_embeddings_add_embedding_and_hybrid_rows() -> None:
    documents, items = facts_corpus(12)
    grid = SweepGrid(chunk_sizes=[256], overlap_fractions=[0], splitters=["recursive"])
    result = sweep(documents, items, grid=grid, embeddings=FakeEmbeddings(), early_stop=False)
    assert result.retrievers == ["bm25", "embedding", "hybrid"]
    assert Counter(r.retriever for r in result.table) == {"bm25": 3, "embedding": 3, "hybrid": 3}
    assert result.embeddings == "FakeEmbeddings"
    hybrid = [r for r in result.table if r.retriever == "hybrid"]
    assert all(r.span_recall > 0 for r in hybrid)


def test_embedding_retrievers_without_embeddings_are_reported_skipped() -> None:
    documents, items = facts_corpus(4)
    grid = SweepGrid(
        chunk_sizes=[256],
        overlap_fractions=[0],
        splitters=["recursive"],
        retrievers=["bm25", "hybrid"],
        top_k=[1, 3],
    )
    result = sweep(documents, items, grid=grid)
    assert {r.retriever for r in result.table} == {"bm25"}
    assert [(s.retrievers, s.settings, s.reason) for s in result.skipped] == [
        (["hybrid"], 2, "no embeddings model was given")
    ]


class BrokenEmbeddings(FakeEmbeddings):
    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        raise RuntimeError("model offline")


def test_failing_embeddings_are_reported_not_raised() -> None:
    documents, items = facts_corpus(4)
    grid = SweepGrid(chunk_sizes=[256, 512], overlap_fractions=[0], splitters=["recursive"])
    result = sweep(documents, items, grid=grid, embeddings=BrokenEmbeddings(), early_stop=False)
    assert result.status == "done"
    assert {r.retriever for r in result.table} == {"bm25"}
    assert len(result.skipped) == 2
    assert all("model offline" in s.reason for s in result.skipped)


class SlowEmbeddings(FakeEmbeddings):
    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        time.sleep(0.2)
        return super().embed_documents(texts)


def test_embedding_that_would_overrun_the_budget_is_abandoned() -> None:
    documents, items = facts_corpus(40)
    grid = SweepGrid(chunk_sizes=[256], overlap_fractions=[0], splitters=["recursive"])
    result = sweep(
        documents, items, grid=grid, embeddings=SlowEmbeddings(), embed_batch_size=1,
        time_budget_s=0.6, early_stop=False,
    )  # fmt: skip
    assert result.status == "done" and result.chosen is not None
    assert {r.retriever for r in result.table} == {"bm25"}
    assert [s.reason for s in result.skipped] == ["embedding it would overrun the time budget"]
    assert result.timing.seconds < 0.6


def test_max_settings_bounds_the_grid() -> None:
    documents, items = facts_corpus(4)
    result = sweep(documents, items, grid=SweepGrid(max_settings=10), early_stop=False)
    # 3 top_k values a chunking: 3 chunkings fit in 10 settings, 15 are skipped.
    assert result.settings_planned == result.settings_evaluated == 9
    assert len(result.skipped) == 15
    assert all("max_settings=10" in s.reason for s in result.skipped)


def test_time_budget_evaluates_one_chunking_and_reports_the_rest() -> None:
    documents, items = facts_corpus(4)
    result = sweep(documents, items, time_budget_s=1e-9)
    assert result.status == "done"
    assert result.settings_evaluated == 3
    assert len(result.skipped) == 17
    assert result.timing.budget_exhausted
    assert all("time budget" in s.reason for s in result.skipped)


def test_baseline_chunking_is_tried_first_and_flagged() -> None:
    documents, items = facts_corpus(6)
    baseline = ChunkingParams(chunk_size=800, chunk_overlap=120)
    result = sweep(documents, items, baseline=baseline)
    flagged = [r for r in result.table if r.baseline]
    assert {(r.chunk_size, r.chunk_overlap, r.splitter) for r in flagged} == {
        (800, 120, "recursive")
    }
    assert result.table[0].baseline
    # A baseline equal to a grid chunking is not tried twice.
    again = sweep(
        documents,
        items,
        baseline=ChunkingParams(chunk_size=256, chunk_overlap=0),
        early_stop=False,
    )
    assert again.settings_evaluated == 54
    assert sum(r.baseline for r in again.table) == 3


@pytest.mark.parametrize(
    "bad",
    [
        {"overlap_fractions": [1.0]},
        {"overlap_fractions": [-0.1]},
        {"chunk_sizes": [0]},
        {"splitters": ["words"]},
        {"retrievers": ["tfidf"]},
        {"top_k": []},
        {"unknown": 1},
    ],
)
def test_grid_rejects_bad_values(bad: dict) -> None:
    with pytest.raises(ValueError):
        SweepGrid(**bad)


def setting_row(**values) -> SettingRow:
    base = {
        "chunk_size": 512, "chunk_overlap": 0, "overlap_fraction": 0.0, "splitter": "recursive",
        "retriever": "bm25", "top_k": 3, "hit_rate": 1.0, "mrr": 1.0, "span_recall": 1.0,
        "context_chars": 1000.0, "chunks": 10,
    }  # fmt: skip
    return SettingRow(**(base | values))


def test_choose_objective() -> None:
    big = setting_row(span_recall=1.0, context_chars=1500)
    small = setting_row(span_recall=0.999, context_chars=300, chunk_size=256)
    assert choose([big, small], tolerance=0.005) == small
    assert choose([big, small], tolerance=0.0) == big
    # Recall first, then MRR, then context.
    assert choose([setting_row(span_recall=0.9, context_chars=10), big]) == big
    better_rank = setting_row(mrr=1.0, context_chars=2000)
    assert choose([setting_row(mrr=0.5, context_chars=100), better_rank]) == better_rank
    # Full ties: bm25 before hybrid, then smaller top_k and chunk size.
    tied = [
        setting_row(retriever="hybrid"),
        setting_row(top_k=5),
        setting_row(chunk_size=1024),
        setting_row(),
    ]
    assert choose(tied) == setting_row()
    assert choose([]) is None


# --- export -------------------------------------------------------------------------------


def ref(doc_id: str, text: str) -> DocumentRef:
    return DocumentRef(
        id=doc_id, source=f"inline:{doc_id}", kind="inline", format="md", bytes=len(text),
        chars=len(text),
    )  # fmt: skip


def pair(question_id: str, spans: list[Span], status: str = "accepted") -> QAPair:
    return QAPair(id=question_id, question="?", answer="!", spans=spans, status=status)


def test_export_chunks_offsets_and_question_ids(tmp_path: Path) -> None:
    documents, items = sections_corpus(6)
    facts, fact_items = facts_corpus(8)
    texts = documents | facts
    result = sweep(texts, items + fact_items)
    pairs = [pair(i.question_id, i.spans) for i in items + fact_items]
    pairs.append(pair("rejected1", items[0].spans, status="rejected"))
    refs = [ref(doc_id, text) for doc_id, text in texts.items()]
    files = write_rag_bundle(tmp_path, result.to_dict(), refs, texts.__getitem__, pairs)
    assert sorted(files) == ["rag/README.md", "rag/chunks.jsonl", "rag/params.json"]

    rows = [json.loads(line) for line in (tmp_path / "rag/chunks.jsonl").read_text().splitlines()]
    chosen = result.chosen
    assert chosen is not None
    expected = [
        c
        for doc_id, text in texts.items()
        for c in chunk_text(
            doc_id,
            text,
            chunk_size=chosen.chunk_size,
            chunk_overlap=chosen.chunk_overlap,
            splitter=chosen.splitter,
        )
    ]
    assert [row["id"] for row in rows] == [c.id for c in expected]
    for row in rows:
        assert texts[row["doc_id"]][row["start"] : row["end"]] == row["text"]
        assert row["source"] == f"inline:{row['doc_id']}"
        overlapping = [
            p.id
            for p in pairs
            if p.status == "accepted"
            and any(
                s.doc_id == row["doc_id"] and s.start < row["end"] and row["start"] < s.end
                for s in p.spans
            )
        ]
        assert row["question_ids"] == overlapping
    assert {q for row in rows for q in row["question_ids"]} == {
        i.question_id for i in items + fact_items
    }
    assert all("rejected1" not in row["question_ids"] for row in rows)

    params = json.loads((tmp_path / "rag/params.json").read_text())
    assert params["status"] == "done"
    assert params["chunking"] == {
        "chunk_size": chosen.chunk_size,
        "chunk_overlap": chosen.chunk_overlap,
        "splitter": chosen.splitter,
        "from": "sweep",
    }
    assert params["retrieval"] == {"retriever": chosen.retriever, "top_k": chosen.top_k}
    assert len(params["table"]) == result.settings_evaluated
    assert params["sweep_seconds"] == result.timing.seconds
    assert params["chunks"]["count"] == len(rows)
    assert "objective" in params and params["objective"].startswith("Highest span_recall")
    readme = (tmp_path / "rag/README.md").read_text()
    assert "chunks.jsonl" in readme and "Document(" in readme


def test_export_of_a_skipped_sweep_uses_the_default_chunking(tmp_path: Path) -> None:
    text = "First paragraph.\n\nSecond paragraph. " * 200
    rag = sweep({"d": text}, []).to_dict() | {
        "default_chunking": {"chunk_size": 300, "chunk_overlap": 50, "splitter": "recursive"}
    }

    def texts(doc_id: str) -> str:
        if doc_id == "d":
            return text
        raise KeyError(doc_id)

    write_rag_bundle(tmp_path, rag, [ref("d", text), ref("lost", "")], texts, [])
    params = json.loads((tmp_path / "rag/params.json").read_text())
    assert params["status"] == "skipped" and "nothing to measure" in params["reason"]
    assert params["chunking"] == {
        "chunk_size": 300, "chunk_overlap": 50, "splitter": "recursive", "from": "goal default"
    }  # fmt: skip
    assert params["retrieval"] is None and params["documents_missing"] == ["lost"]
    rows = [json.loads(line) for line in (tmp_path / "rag/chunks.jsonl").read_text().splitlines()]
    expected = chunk_text("d", text, chunk_size=300, chunk_overlap=50)
    assert [(r["start"], r["end"]) for r in rows] == [(c.start, c.end) for c in expected]
    assert "skipped" in (tmp_path / "rag/README.md").read_text()


# --- node ---------------------------------------------------------------------------------


def goal() -> ResolvedGoal:
    return ResolvedGoal(
        name="qa", description="Q/A", loop="qa", source="library:qa", metrics=["faithfulness"],
        baseline={}, params={"chunk_size": 800, "chunk_overlap": 120}, user_prompts=[],
        prompts={},
    )  # fmt: skip


async def test_node_sweeps_accepted_pairs(tmp_path: Path) -> None:
    documents, items = sections_corpus(6)
    text = documents["manual"]
    doc = ref("manual", text)
    pairs = {i.question_id: pair(i.question_id, i.spans) for i in items}
    pairs["q0"] = pairs["q0"].model_copy(update={"question": items[0].question})
    pairs["failing"] = pair("failing", items[1].spans, status="failing")
    pairs["nospans"] = pair("nospans", [])
    with ChunkStore(":memory:") as store:
        store.put_document(LoadedDocument(ref=doc, text=text))
        ctx = RunContext(
            llm=make_llm_client(LLMSettings(provider="fake")), store=store, out_dir=tmp_path
        )
        state = {
            "goal": goal(),
            "pairs": pairs,
            "documents": [doc, ref("absent", "")],
            "persona": PersonaProfile(name="Ops", description="plant operator"),
            "iteration": 2,
        }
        update = await optimize_rag(state, Runtime(context=ctx))
    rag = update["rag"]
    json.dumps(rag)
    assert rag["status"] == "done"
    assert rag["evaluation"]["questions"] == 6  # accepted pairs with spans only
    assert rag["default_chunking"] == {
        "chunk_size": 800, "chunk_overlap": 120, "splitter": "recursive"
    }  # fmt: skip
    assert rag["retrievers"] == ["bm25", "embedding", "hybrid"]  # the fake client embeds
    assert any(row["baseline"] for row in rag["table"])
    assert rag["chosen"] is not None and rag["timing"]["seconds"] >= 0
    assert [e.item for e in update["events"]] == ["absent"]
    assert update["stages"][0].node == "optimize_rag"


async def test_node_without_accepted_pairs_reports_skip(tmp_path: Path) -> None:
    with ChunkStore(":memory:") as store:
        ctx = RunContext(
            llm=make_llm_client(LLMSettings(provider="fake")), store=store, out_dir=tmp_path
        )
        state = {"goal": goal(), "pairs": {}, "documents": [], "iteration": 1}
        update = await optimize_rag(state, Runtime(context=ctx))
    assert update["rag"]["status"] == "skipped"
    assert update["events"][0].level == "info"


# --- reusing an early sweep ------------------------------------------------------------------


def _mixed_corpus() -> tuple[dict[str, str], list[EvalItem]]:
    documents, items = sections_corpus(8)
    facts, fact_items = facts_corpus(16)
    return documents | facts, items + fact_items


@pytest.mark.parametrize("early_stop", [False, True], ids=["exhaustive", "early-stop"])
@pytest.mark.parametrize("embeddings", [None, FakeEmbeddings()], ids=["bm25", "dense"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_restricting_a_sweep_equals_sweeping_the_subset(
    embeddings: object, seed: int, early_stop: bool
) -> None:
    import random

    documents, items = _mixed_corpus()
    baseline = ChunkingParams(chunk_size=800, chunk_overlap=120)
    kwargs = {"embeddings": embeddings, "baseline": baseline, "early_stop": early_stop}
    cache = SweepCache()
    full = sweep(documents, items, cache=cache, **kwargs)  # type: ignore[arg-type]
    subset = random.Random(seed).sample(items, 9)
    restricted = restrict(full, subset)
    fresh = sweep(documents, subset, **kwargs)  # type: ignore[arg-type]
    if early_stop:
        # The subset's search may want a setting the full one skipped: then restrict says
        # so, and the sweep over the subset is served from the cache the full one filled.
        if restricted is None:
            restricted = sweep(documents, subset, cache=cache, **kwargs)  # type: ignore[arg-type]
        exhaustive = sweep(documents, subset, **(kwargs | {"early_stop": False}))  # type: ignore[arg-type]
        assert restricted.chosen == exhaustive.chosen
    assert restricted is not None
    assert restricted.model_dump(exclude={"timing"}) == fresh.model_dump(exclude={"timing"})
    assert restricted.chosen == fresh.chosen and restricted.evaluation.questions == 9


def test_restrict_refuses_what_it_cannot_reproduce() -> None:
    documents, items = facts_corpus(8)
    full = sweep(documents, items)
    assert restrict(full, items[:3]) is not None
    moved = items[0].model_copy(update={"spans": items[1].spans})  # the answer changed
    assert restrict(full, [moved, *items[2:4]]) is None
    unknown = EvalItem(question_id="new", question="?", spans=items[0].spans)
    assert restrict(full, [unknown]) is None
    assert restrict(full, []) is None  # nothing to measure: a real sweep says why
    rushed = sweep(documents, items, time_budget_s=1e-9)  # settings skipped for time
    assert restrict(rushed, items[:3]) is None
    # A result read back from JSON (another process) has nothing to reuse.
    assert restrict(type(full).model_validate(full.to_dict()), items[:3]) is None


async def test_the_node_reuses_the_sweep_started_when_the_answers_came(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import personagen.nodes.optimize_rag as node

    documents, items = sections_corpus(6)
    text = documents["manual"]
    doc = ref("manual", text)
    calls: list[int] = []

    def counting_sweep(*args: object, **kwargs: object) -> object:
        calls.append(len(args[1]))  # type: ignore[arg-type]
        return sweep(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(node, "sweep", counting_sweep)
    answered = {i.question_id: pair(i.question_id, i.spans, "answered") for i in items}
    with ChunkStore(":memory:") as store:
        store.put_document(LoadedDocument(ref=doc, text=text))
        ctx = RunContext(
            llm=make_llm_client(LLMSettings(provider="fake")), store=store, out_dir=tmp_path
        )
        state = {
            "goal": goal(),
            "pairs": answered,
            "documents": [doc],
            "persona": PersonaProfile(name="Ops", description="plant operator"),
            "iteration": 1,
        }
        node.prefetch_sweep(state, ctx)  # what collect_answers does
        accepted = {pid: p.model_copy(update={"status": "accepted"}) for pid, p in answered.items()}
        accepted["q0"] = accepted["q0"].model_copy(update={"status": "rejected"})
        update = await optimize_rag({**state, "pairs": accepted}, Runtime(context=ctx))
        assert calls == [6]  # the early sweep only: the node re-aggregated it
        fresh = sweep(
            {"manual": text},
            [
                EvalItem(question_id=p.id, question=p.question, spans=p.spans)
                for p in accepted.values()
                if p.status == "accepted"
            ],
            embeddings=ctx.llm.embeddings,
            baseline=ChunkingParams(chunk_size=800, chunk_overlap=120),
        )
    rag = update["rag"]
    assert rag["evaluation"]["questions"] == 5
    assert rag["chosen"] == fresh.to_dict()["chosen"] and rag["table"] == fresh.to_dict()["table"]


def test_a_stopped_sweep_ends_early_and_cannot_be_reused() -> None:
    import threading

    documents, items = facts_corpus(8)
    stop = threading.Event()
    stop.set()
    result = sweep(documents, items, stop=stop)
    assert result.status == "done" and result.settings_evaluated == 3  # one chunking at least
    assert result.timing.budget_exhausted
    assert restrict(result, items[:3]) is None
