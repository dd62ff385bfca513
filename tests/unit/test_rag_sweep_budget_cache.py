"""The RAG sweep's hard time budget, its result cache, and its early stop (same choice)."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

import personagen.data.rag_sweep as rag_sweep
from personagen.data.rag_sweep import (
    ChunkingParams,
    EvalItem,
    SweepCache,
    SweepGrid,
    restrict,
    sweep,
)
from personagen.llm.fake import FakeEmbeddings
from personagen.state.documents import Span

WORDS = (
    "pump valve seal gasket torque relay rack firmware reboot shift log flush guard cable "
    "fuse breaker meter sensor filter hose clamp bolt nut washer panel switch lamp fan belt "
    "motor gear shaft bearing coupling"
).split()


def random_corpus(rng: random.Random) -> tuple[dict[str, str], list[EvalItem]]:
    """Documents of sentences with headings; questions whose gold is 1-3 sentences."""
    documents: dict[str, str] = {}
    sentences: dict[str, list[tuple[int, int]]] = {}
    for d in range(rng.randint(1, 3)):
        parts: list[str] = []
        spans: list[tuple[int, int]] = []
        size = 0
        for _ in range(rng.randint(8, 40)):
            if rng.random() < 0.15:
                heading = f"## {rng.choice(WORDS).title()} {rng.randint(1, 99)}\n\n"
                parts.append(heading)
                size += len(heading)
            words = [rng.choice(WORDS) for _ in range(rng.randint(4, 18))]
            sentence = " ".join(words).capitalize() + rng.choice([". ", ".\n\n", "? "])
            spans.append((size, size + len(sentence.rstrip())))
            parts.append(sentence)
            size += len(sentence)
        documents[f"d{d}"] = "".join(parts)
        sentences[f"d{d}"] = spans
    items = []
    for q in range(rng.randint(2, 12)):
        doc_id = rng.choice(list(documents))
        spans = sentences[doc_id]
        first = rng.randrange(len(spans))
        last = min(len(spans) - 1, first + rng.choice((0, 0, 1, 2)))
        start, end = spans[first][0], spans[last][1]
        text = documents[doc_id][start:end]
        picked = rng.sample(text.lower().replace(".", " ").split(), k=min(3, len(text.split())))
        items.append(
            EvalItem(
                question_id=f"q{q}",
                question=" ".join([*picked, rng.choice(WORDS)]) + "?",
                spans=[Span(doc_id=doc_id, start=start, end=end, text=text)],
            )
        )
    return documents, items


def random_grid(rng: random.Random) -> SweepGrid:
    return SweepGrid(
        chunk_sizes=rng.sample([64, 128, 200, 256, 400, 512], k=rng.randint(1, 4)),
        overlap_fractions=rng.sample([0.0, 0.1, 0.25, 0.5], k=rng.randint(1, 2)),
        splitters=rng.sample(["recursive", "markdown", "sentence"], k=rng.randint(1, 3)),
        top_k=rng.sample([1, 2, 3, 4, 5, 8], k=rng.randint(1, 3)),
    )


# --- early stop ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(40))
def test_early_stop_chooses_what_the_exhaustive_sweep_chooses(seed: int) -> None:
    rng = random.Random(seed)
    documents, items = random_corpus(rng)
    grid = random_grid(rng)
    embeddings = FakeEmbeddings(dim=64) if seed % 2 else None
    baseline = (
        ChunkingParams(chunk_size=rng.choice([150, 300]), chunk_overlap=rng.choice([0, 30]))
        if seed % 3
        else None
    )
    tolerance = rng.choice([0.0, 0.005, 0.05])
    kwargs = {"grid": grid, "embeddings": embeddings, "baseline": baseline, "tolerance": tolerance}
    fast = sweep(documents, items, early_stop=True, **kwargs)  # type: ignore[arg-type]
    full = sweep(documents, items, early_stop=False, **kwargs)  # type: ignore[arg-type]
    assert fast.chosen == full.chosen
    # Every row the early stop kept is the exhaustive sweep's row, values and all.
    assert all(row in full.table for row in fast.table)
    skipped = sum(s.settings for s in fast.skipped if "early stop" in s.reason)
    assert fast.settings_evaluated + skipped == full.settings_evaluated


def test_early_stop_skips_settings_that_cannot_win_and_says_why() -> None:
    documents, items = random_corpus(random.Random(3))
    text = documents["d0"]
    # One short exact fact per question: small chunks at top_k=1 are perfect and smallest.
    facts = "".join(f"The zq{i} relay trips at {i} amps.\n\n" for i in range(30))
    documents = {"facts": facts}
    items = []
    for i in range(30):
        start = facts.index(f"The zq{i} relay")
        end = facts.index("\n\n", start)
        items.append(
            EvalItem(
                question_id=f"f{i}",
                question=f"At what current does the zq{i} relay trip?",
                spans=[Span(doc_id="facts", start=start, end=end, text=facts[start:end])],
            )
        )
    del text
    result = sweep(documents, items, embeddings=FakeEmbeddings())
    reasons = [s.reason for s in result.skipped]
    assert any("early stop" in r for r in reasons)
    assert result.settings_evaluated < result.settings_planned
    assert (
        result.chosen
        == sweep(documents, items, embeddings=FakeEmbeddings(), early_stop=False).chosen
    )


# --- the hard time budget ------------------------------------------------------------------


class SlowEmbeddings(FakeEmbeddings):
    """Every call sleeps: a first-batch probe cannot tell how long a later call takes."""

    def __init__(self, documents_s: float, query_s: float = 0.0) -> None:
        super().__init__()
        self.documents_s, self.query_s = documents_s, query_s
        self.calls = 0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls += 1
        time.sleep(self.documents_s)
        return super().embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        self.calls += 1
        time.sleep(self.query_s)
        return super().embed_query(text)


@pytest.mark.parametrize(
    ("documents_s", "query_s", "batch"),
    [(2.0, 0.0, 64), (0.05, 0.0, 1), (0.0, 0.3, 64), (0.15, 0.01, 8)],
    ids=["one-call-past-the-deadline", "many-small-calls", "slow-queries", "mixed"],
)
def test_the_budget_is_never_exceeded(documents_s: float, query_s: float, batch: int) -> None:
    rng = random.Random(5)
    documents, items = random_corpus(rng)
    budget = 0.6
    clock = time.perf_counter()
    result = sweep(
        documents,
        items,
        embeddings=SlowEmbeddings(documents_s, query_s),
        time_budget_s=budget,
        embed_batch_size=batch,
        early_stop=False,
    )
    wall = time.perf_counter() - clock
    assert result.status == "done" and result.chosen is not None
    assert result.timing.seconds <= budget + 0.05
    assert wall <= budget + 0.1
    assert result.timing.budget_exhausted
    assert any("time budget" in s.reason for s in result.skipped)
    assert restrict(result, items[:1]) is None  # timing-dependent: not reusable


def test_an_abandoned_call_does_not_run_alongside_the_next_one() -> None:
    documents, items = random_corpus(random.Random(6))
    inside = 0
    overlapped = False

    class Exclusive(FakeEmbeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            nonlocal inside, overlapped
            inside += 1
            overlapped |= inside > 1
            time.sleep(0.4)
            inside -= 1
            return super().embed_documents(texts)

    model = Exclusive()
    sweep(documents, items, embeddings=model, time_budget_s=0.2, early_stop=False)
    sweep(documents, items, embeddings=model, time_budget_s=0.2, early_stop=False)
    time.sleep(0.5)
    assert not overlapped


# --- the cache -----------------------------------------------------------------------------


class Counting(FakeEmbeddings):
    def __init__(self, dim: int = 256) -> None:
        super().__init__(dim)
        self.calls = 0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls += 1
        return super().embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        self.calls += 1
        return super().embed_query(text)


@pytest.fixture
def chunkings(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, str]]:
    made: list[tuple[int, int, str]] = []
    real = rag_sweep._chunk_corpus

    def counting(texts, doc_ids, params, baseline):  # type: ignore[no-untyped-def]
        made.append((params.chunk_size, params.chunk_overlap, params.splitter))
        return real(texts, doc_ids, params, baseline)

    monkeypatch.setattr(rag_sweep, "_chunk_corpus", counting)
    return made


def test_an_unchanged_rerun_is_served_from_the_cache(
    tmp_path: Path, chunkings: list[tuple[int, int, str]]
) -> None:
    documents, items = random_corpus(random.Random(8))
    path = tmp_path / "state" / "rag_sweep.sqlite"
    model = Counting()
    with SweepCache(path) as cache:
        first = sweep(documents, items, embeddings=model, cache=cache)
    assert chunkings and model.calls
    chunkings.clear()
    model.calls = 0
    with SweepCache(path) as cache:  # another process would open the same file
        again = sweep(documents, items, embeddings=model, cache=cache)
        assert cache.hits > 0  # (misses: settings the early stop skipped were never scored)
    assert chunkings == [] and model.calls == 0
    assert again.model_dump(exclude={"timing"}) == first.model_dump(exclude={"timing"})
    assert again.timing.chunking == again.timing.embedding == again.timing.bm25 == 0.0


@pytest.mark.parametrize("change", ["chunking", "document", "question", "span", "model"])
def test_the_cache_misses_when_a_key_part_changes(
    change: str, chunkings: list[tuple[int, int, str]]
) -> None:
    documents, items = random_corpus(random.Random(9))
    grid = SweepGrid(chunk_sizes=[128, 256], overlap_fractions=[0.0], splitters=["recursive"])
    model = Counting()
    cache = SweepCache()
    first = sweep(documents, items, grid=grid, embeddings=model, cache=cache, early_stop=False)
    chunkings.clear()
    model.calls = 0
    if change == "chunking":
        grid = grid.model_copy(update={"chunk_sizes": [128, 256, 300]})
    elif change == "document":
        documents = {**documents, "d0": documents["d0"] + " Extra torque note."}
    elif change == "question":
        items = [items[0].model_copy(update={"question": "Which fuse?"}), *items[1:]]
    elif change == "span":
        span = items[0].spans[0]
        shorter = span.model_copy(update={"end": span.end - 1})
        items = [items[0].model_copy(update={"spans": [shorter]}), *items[1:]]
    else:
        model = Counting(dim=128)
    again = sweep(documents, items, grid=grid, embeddings=model, cache=cache, early_stop=False)
    made = list(chunkings)
    fresh = sweep(documents, items, grid=grid, embeddings=Counting(model.dim), early_stop=False)
    assert again.model_dump(exclude={"timing"}) == fresh.model_dump(exclude={"timing"})
    if change == "chunking":
        assert made == [(300, 0, "recursive")]  # only the new chunking
    elif change == "model":
        assert model.calls > 0
    else:
        assert made  # recomputed
    assert first.chosen is not None


def test_a_subset_of_the_questions_is_served_from_the_cache(
    chunkings: list[tuple[int, int, str]],
) -> None:
    documents, items = random_corpus(random.Random(10))
    cache = SweepCache()
    model = Counting()
    sweep(documents, items, embeddings=model, cache=cache, early_stop=False)
    chunkings.clear()
    model.calls = 0
    subset = items[: max(1, len(items) // 2)]
    served = sweep(documents, subset, embeddings=model, cache=cache, early_stop=False)
    assert chunkings == [] and model.calls == 0
    fresh = sweep(documents, subset, embeddings=Counting(), early_stop=False)
    assert served.model_dump(exclude={"timing"}) == fresh.model_dump(exclude={"timing"})


def test_an_unreadable_cache_file_is_skipped(tmp_path: Path) -> None:
    documents, items = random_corpus(random.Random(11))
    bad = tmp_path / "rag_sweep.sqlite"
    bad.write_bytes(b"not a database" * 100)
    with SweepCache(bad) as cache:
        result = sweep(documents, items, cache=cache)
    assert result.status == "done" and result.chosen is not None


# --- the node: the goal's budget, the cache next to the chunk store ------------------------------


async def test_the_node_takes_the_goals_budget_and_caches_next_to_the_chunk_store(
    tmp_path: Path, chunkings: list[tuple[int, int, str]]
) -> None:
    from langgraph.runtime import Runtime

    from personagen.data.chunk_store import ChunkStore
    from personagen.graph.context import RunContext
    from personagen.llm.factory import make_llm_client
    from personagen.nodes.optimize_rag import optimize_rag
    from personagen.state.documents import DocumentRef, LoadedDocument
    from personagen.state.goal import ResolvedGoal
    from personagen.state.items import PersonaProfile, QAPair
    from personagen.state.spec import LLMSettings

    documents, items = random_corpus(random.Random(12))
    refs = [
        DocumentRef(
            id=d, source=f"inline:{d}", kind="inline", format="md", bytes=len(t), chars=len(t)
        )
        for d, t in documents.items()
    ]
    goal = ResolvedGoal(
        name="qa", description="Q/A", loop="qa", source="library:qa", metrics=["faithfulness"],
        baseline={}, prompts={}, user_prompts=[],
        params={"chunk_size": 300, "chunk_overlap": 30, "top_k": 2, "rag_sweep_budget_s": 7.5},
    )  # fmt: skip
    pairs = {
        i.question_id: QAPair(id=i.question_id, question=i.question, answer="!", spans=i.spans,
                              status="accepted")
        for i in items
    }  # fmt: skip
    updates = []
    for _ in range(2):
        with ChunkStore(tmp_path / "state" / "chunks.sqlite") as store:
            for ref in refs:
                store.put_document(LoadedDocument(ref=ref, text=documents[ref.id]))
            ctx = RunContext(
                llm=make_llm_client(LLMSettings(provider="fake")), store=store, out_dir=tmp_path
            )
            state = {
                "goal": goal, "pairs": pairs, "documents": refs, "iteration": 1,
                "persona": PersonaProfile(name="Ops", description="plant operator"),
            }  # fmt: skip
            updates.append((await optimize_rag(state, Runtime(context=ctx)))["rag"])
        if not chunkings:
            break
        made, chunkings[:] = list(chunkings), []
    assert made and chunkings == []  # the second run chunked nothing
    assert (tmp_path / "state" / "rag_sweep.sqlite").is_file()
    first, second = updates
    assert first["timing"]["budget_seconds"] == 7.5
    assert {row["top_k"] for row in first["table"]} <= {1, 2, 3, 5}
    assert any(row["baseline"] and row["top_k"] == 2 for row in first["table"])
    assert first["chosen"] == second["chosen"] and first["table"] == second["table"]
