"""Seconds to chunk and index 10 MB of generated text (run: python benchmarks/chunking.py)."""

from __future__ import annotations

import argparse
import random
import time

from personagen.data import SPLITTERS, BM25Index, chunk_text

WORDS = (
    "persona mortgage deposit nurse shift house survey closing costs rate payment the of and "
    "a to in is for with budget savings interest loan lender broker Dr. e.g. offer agent"
).split()


def generate(size: int, seed: int = 0) -> str:
    """Markdown-ish text: headings, paragraphs of sentences, some repeated paragraphs."""
    rng = random.Random(seed)
    parts: list[str] = []
    total = 0
    while total < size:
        if rng.random() < 0.05:
            part = f"## Section {len(parts)}"
        elif parts and rng.random() < 0.05:
            part = rng.choice(parts)  # repeated paragraphs are the hard case for offsets
        else:
            sentences = []
            for _ in range(rng.randint(1, 8)):
                words = [rng.choice(WORDS) for _ in range(rng.randint(5, 30))]
                sentences.append(" ".join(words).capitalize() + rng.choice(".!?"))
            part = " ".join(sentences)
        parts.append(part)
        total += len(part) + 2
    return "\n\n".join(parts)[:size]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=float, default=10.0, help="megabytes of text")
    parser.add_argument("--chunk-size", type=int, default=1000)
    parser.add_argument("--chunk-overlap", type=int, default=150)
    args = parser.parse_args()

    text = generate(int(args.mb * 1_000_000))
    print(f"text: {len(text):,} characters")
    chunks = []
    for splitter in SPLITTERS:
        started = time.perf_counter()
        chunks = chunk_text(
            "0" * 64,
            text,
            chunk_size=args.chunk_size,
            chunk_overlap=args.chunk_overlap,
            splitter=splitter,  # type: ignore[arg-type]
        )
        elapsed = time.perf_counter() - started
        assert all(text[c.start : c.end] == c.text for c in chunks)
        print(f"chunk ({splitter:9}): {elapsed:6.2f} s  {len(chunks):,} chunks")
        if splitter == "recursive":
            recursive_chunks = chunks

    started = time.perf_counter()
    index = BM25Index(recursive_chunks)
    print(f"BM25 index        : {time.perf_counter() - started:6.2f} s  {len(index):,} chunks")
    queries = ["mortgage deposit savings", "nurse shift budget", "closing costs survey"] * 34
    started = time.perf_counter()
    index.search_many(queries, k=10)
    print(f"BM25 {len(queries)} queries  : {time.perf_counter() - started:6.2f} s")


if __name__ == "__main__":
    main()
