"""RAG sweep at scale: 1 MB and 10 MB of generated text with eval items of known spans.

Each run happens in a fresh subprocess so its peak memory is its own. Prints, per size, the
sweep's wall time (and where it went), the peak resident memory of the process and how much
the sweep added to it, and optionally (`--tracemalloc`, in a separate run since tracing slows
allocation) the peak of memory allocated during the sweep. Ends with how each figure grows
from the smallest size to the largest.

Usage:
    python benchmarks/rag_sweep.py [--sizes 1 10] [--questions 200]
        [--embeddings none|fake|e5] [--budget 600] [--tracemalloc] [--exhaustive]

Each size is swept once more with the first sweep's cache (an unchanged rerun); that
second time is printed as "rerun". `--exhaustive` turns the early stop off.

`fake` is the deterministic hashing `FakeEmbeddings` (pure Python), `e5` the embedded
multilingual-e5-small (needs the `local` extra; slow on CPU, so the budget decides).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
import tracemalloc

from personagen.data.rag_sweep import EvalItem, SweepCache, sweep
from personagen.state.documents import Span

FUNCTION = (
    "the of and to in is that for it as with on by at from this be are or an was which "
    "not can each when all will if its one may their more also than into only other"
).split()
QUESTION_STARTS = ["How does", "What is", "Why does", "When should", "Which", "Where is"]
DOC_CHARS = 250_000  # documents of ~250 KB: a 10 MB corpus is 40 files


def vocabulary(rng: random.Random, size: int = 30_000) -> list[str]:
    """Pronounceable pseudo-words; drawn with Zipf-like weights, like real vocabulary."""
    onsets = "b c d f g h k l m n p r s t v w z br cl dr fl gr pl pr sk sl st tr".split()
    vowels = "a e i o u ai ea ee oa ou".split()
    codas = ["", "n", "r", "s", "t", "l", "nd", "st", "rk", "x"]
    words: set[str] = set()
    while len(words) < size:
        syllables = rng.choice((1, 2, 2, 3, 3, 4))
        words.add(
            "".join(
                rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas)
                for _ in range(syllables)
            )
        )
    return sorted(words)


class Generator:
    """Markdown-ish documents: headings, paragraphs of sentences, some bullet lists."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.words = vocabulary(self.rng)
        weights = [1 / (rank + 10) for rank in range(len(self.words))]
        total = sum(weights)
        self.cumulative = []
        running = 0.0
        for weight in weights:
            running += weight / total
            self.cumulative.append(running)

    def content(self, count: int) -> list[str]:
        return self.rng.choices(self.words, cum_weights=self.cumulative, k=count)

    def sentence(self) -> str:
        rng = self.rng
        parts = []
        for word in self.content(rng.randint(6, 22)):
            if rng.random() < 0.45:
                parts.append(rng.choice(FUNCTION))
            parts.append(word)
        text = " ".join(parts)
        return text[0].upper() + text[1:] + rng.choice(".....?!")

    def document(self, chars: int) -> tuple[str, list[tuple[int, int]]]:
        """Text of about `chars` characters and the (start, end) of every sentence."""
        rng = self.rng
        pieces: list[str] = []
        sentences: list[tuple[int, int]] = []
        size = 0

        def add(piece: str, sentence: bool = False) -> None:
            nonlocal size
            if sentence:
                sentences.append((size, size + len(piece)))
            pieces.append(piece)
            size += len(piece)

        section = 0
        while size < chars:
            if rng.random() < 0.12 or not pieces:
                section += 1
                add(f"{'#' * rng.choice((1, 2, 2, 3))} {' '.join(self.content(3)).title()}\n\n")
            if rng.random() < 0.1:
                for _ in range(rng.randint(2, 5)):
                    add("- ")
                    add(self.sentence(), sentence=True)
                    add("\n")
                add("\n")
                continue
            for index in range(rng.randint(2, 7)):
                if index:
                    add(" ")
                add(self.sentence(), sentence=True)
            add("\n\n")
        return "".join(pieces), sentences

    def question(self, span_text: str) -> str:
        words = [w for w in span_text.lower().replace(".", " ").split() if w not in FUNCTION]
        picked = self.rng.sample(words, min(len(words), self.rng.randint(2, 5)))
        # Questions paraphrase: some of their words are not in the answer's text.
        picked += self.content(self.rng.randint(1, 3))
        self.rng.shuffle(picked)
        return f"{self.rng.choice(QUESTION_STARTS)} {' '.join(picked)}?"


def corpus(
    megabytes: float, questions: int, seed: int = 7
) -> tuple[dict[str, str], list[EvalItem]]:
    generator = Generator(seed)
    total = int(megabytes * 1_000_000)
    documents: dict[str, str] = {}
    sentences: dict[str, list[tuple[int, int]]] = {}
    number = 0
    while sum(len(t) for t in documents.values()) < total:
        doc_id = f"doc{number:03d}"
        left = total - sum(len(t) for t in documents.values())
        documents[doc_id], sentences[doc_id] = generator.document(min(DOC_CHARS, left))
        number += 1
    rng = random.Random(seed + 1)
    items = []
    for index in range(questions):
        doc_id = rng.choice(list(documents))
        text, spans = documents[doc_id], sentences[doc_id]
        first = rng.randrange(len(spans))
        # One to three consecutive sentences: some answers cross paragraph breaks.
        last = min(len(spans) - 1, first + rng.choice((0, 0, 1, 2)))
        start, end = spans[first][0], spans[last][1]
        items.append(
            EvalItem(
                question_id=f"q{index}",
                question=generator.question(text[start:end]),
                spans=[Span(doc_id=doc_id, start=start, end=end, text=text[start:end])],
            )
        )
    return documents, items


def embeddings_for(name: str):  # noqa: ANN201 - returns a LangChain Embeddings or None
    if name == "fake":
        from personagen.llm.fake import FakeEmbeddings

        return FakeEmbeddings()
    if name == "e5":
        from personagen.llm.embedded import EmbeddedEmbeddings

        return EmbeddedEmbeddings()
    return None


def child(args: argparse.Namespace) -> None:
    clock = time.perf_counter()
    documents, items = corpus(args.child, args.questions)
    generated = time.perf_counter() - clock
    embeddings = embeddings_for(args.embeddings)
    baseline_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if args.tracemalloc:
        tracemalloc.start()
    cache = SweepCache()
    options = {
        "embeddings": embeddings,
        "time_budget_s": args.budget,
        "cache": cache,
        "early_stop": not args.exhaustive,
    }
    clock = time.perf_counter()
    result = sweep(documents, items, **options)
    seconds = time.perf_counter() - clock
    traced = tracemalloc.get_traced_memory()[1] if args.tracemalloc else None
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    clock = time.perf_counter()
    again = sweep(documents, items, **options)
    rerun = time.perf_counter() - clock
    assert again.chosen == result.chosen
    chosen = result.chosen
    print(
        json.dumps(
            {
                "mb": args.child,
                "chars": result.evaluation.chars,
                "documents": result.evaluation.documents,
                "questions": result.evaluation.questions,
                "generate_s": round(generated, 2),
                "seconds": round(seconds, 2),
                "rerun_s": round(rerun, 2),
                "timing": result.timing.model_dump(),
                "settings": result.settings_evaluated,
                "planned": result.settings_planned,
                "skipped": sum(s.settings for s in result.skipped),
                "skip_reasons": sorted({s.reason for s in result.skipped}),
                "peak_rss_mb": round(peak_rss / 1024, 1),
                "sweep_rss_mb": round((peak_rss - baseline_rss) / 1024, 1),
                "traced_peak_mb": round(traced / 2**20, 1) if traced is not None else None,
                "chosen": chosen.model_dump() if chosen else None,
            }
        )
    )


def run(size: float, args: argparse.Namespace, *, trace: bool) -> dict:
    command = [
        sys.executable,
        __file__,
        "--child",
        str(size),
        "--questions",
        str(args.questions),
        "--embeddings",
        args.embeddings,
        "--budget",
        str(args.budget),
        *(["--exhaustive"] if args.exhaustive else []),
    ]
    if trace:
        command.append("--tracemalloc")
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=float, nargs="+", default=[1, 10], help="megabytes")
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--embeddings", choices=["none", "fake", "e5"], default="none")
    parser.add_argument("--budget", type=float, default=600.0, help="sweep time budget (s)")
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--exhaustive", action="store_true", help="no early stop")
    parser.add_argument("--child", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args)
        return

    print(
        f"RAG sweep, default grid, {args.questions} questions, embeddings={args.embeddings}, "
        f"budget {args.budget:g} s, early stop {'off' if args.exhaustive else 'on'}"
    )
    results = []
    for size in args.sizes:
        row = run(size, args, trace=False)
        if args.tracemalloc:
            row["traced_peak_mb"] = run(size, args, trace=True)["traced_peak_mb"]
        results.append(row)
        t = row["timing"]
        chosen = row["chosen"] or {}
        print(
            f"{size:g} MB ({row['chars']:,} chars, {row['documents']} docs): "
            f"{row['seconds']:.1f} s [tokenize {t['tokenize']:.1f}, chunking {t['chunking']:.1f}, "
            f"bm25 {t['bm25']:.1f}, embedding {t['embedding']:.1f}, scoring {t['scoring']:.1f}], "
            f"{row['settings']}/{row['planned']} settings ({row['skipped']} skipped), "
            f"peak RSS {row['peak_rss_mb']} MB (+{row['sweep_rss_mb']} MB in the sweep); "
            f"rerun from the cache {row['rerun_s']:.2f} s"
            + (f", traced peak {row['traced_peak_mb']} MB" if row["traced_peak_mb"] else "")
        )
        for reason in row["skip_reasons"]:
            print(f"    skipped: {reason}")
        print(
            f"    chose {chosen.get('splitter')} {chosen.get('chunk_size')}/"
            f"{chosen.get('chunk_overlap')} {chosen.get('retriever')} k={chosen.get('top_k')}: "
            f"span_recall {chosen.get('span_recall')}, mrr {chosen.get('mrr')}, "
            f"context {chosen.get('context_chars')}"
        )
    if len(results) > 1:
        first, last = results[0], results[-1]
        factor = last["chars"] / first["chars"]
        print(
            f"growth x{factor:.1f} text: time x{last['seconds'] / first['seconds']:.1f}, "
            f"sweep RSS x{last['sweep_rss_mb'] / max(first['sweep_rss_mb'], 0.1):.1f}"
            + (
                f", traced peak x{last['traced_peak_mb'] / first['traced_peak_mb']:.1f}"
                if first["traced_peak_mb"] and last["traced_peak_mb"]
                else ""
            )
        )


if __name__ == "__main__":
    main()
