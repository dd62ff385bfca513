"""Cost side by side: Ragas 0.4.3's TestsetGenerator and PersonaGen, same documents and persona.

Both tools talk to one counting OpenAI-compatible fake server (`_openai_fake_server.py`,
127.0.0.1, chat + embeddings), which counts calls and tokens with one regex tokenizer for
both. Everything is offline: Ragas' telemetry is off (`RAGAS_DO_NOT_TRACK=true`) and its
tiktoken token counts (which would download an encoding) are replaced by that tokenizer.
Ragas gets PersonaGen's persona (`ragas.testset.persona.Persona`); its rows are not judged.
PersonaGen runs the `qa` goal with its judges, then once more unchanged (response cache and
RAG-sweep cache on) to time a rerun.

Usage:
    python benchmarks/peer_cost.py [--questions 10] [--iterations 2] [--docs DIR]

Documents: benchmarks/data/quality/ (.md .rst .txt) when present, else
examples/home-buying/docs/.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ["RAGAS_DO_NOT_TRACK"] = "true"
os.environ.setdefault("PEER_COST_KEY", "fake-key")

from _openai_fake_server import Counts, FakeOpenAIServer, count_tokens  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PERSONA = {
    "name": "Sam",
    "description": (
        "New operations engineer at a small company who also rents a flat; reads guides on "
        "a laptop between tasks and wants concrete steps."
    ),
    "role": "operations engineer",
    "expertise": "novice",
    "language": "en",
    "goals": ["run the ingest job safely", "write code the team accepts", "get a deposit back"],
    "pain_points": ["jargon", "long documents"],
    "custom_questions": ["What should I check before restarting the ingest job?"],
}


def documents(folder: Path | None) -> list[Path]:
    if folder is None:
        quality = ROOT / "benchmarks" / "data" / "quality"
        found = sorted(
            p
            for p in quality.glob("*")
            if p.suffix in {".md", ".rst", ".txt"} and p.name != "README.md"  # about the set
        )
        if found:
            return found
        folder = ROOT / "examples" / "home-buying" / "docs"
    return sorted(p for p in folder.glob("*") if p.suffix in {".md", ".rst", ".txt"})


def offline_ragas_tokenizer() -> None:
    """Ragas counts tokens with tiktoken (a download); use the server's tokenizer instead."""
    import ragas.testset.transforms.default as default
    import ragas.testset.transforms.splitters.headline as headline
    import ragas.tokenizers as tokenizers
    import ragas.utils as utils
    from ragas.tokenizers import BaseTokenizer

    class RegexTokenizer(BaseTokenizer):
        _vocab: dict[str, int] = {}
        _pieces: list[str] = []

        def encode(self, text: str) -> list[int]:
            import re

            ids = []
            for piece in re.findall(r"\s*(?:\w+|[^\w\s])", text):
                if piece not in self._vocab:
                    self._vocab[piece] = len(self._pieces)
                    self._pieces.append(piece)
                ids.append(self._vocab[piece])
            return ids

        def decode(self, tokens: list[int]) -> str:
            return "".join(self._pieces[t] for t in tokens)

        def count_tokens(self, text: str) -> int:
            return count_tokens(text)

    tokenizers._default_tokenizer = RegexTokenizer()  # type: ignore[assignment]

    def counted(string: str, encoding_name: str = "", tokenizer: Any = None) -> int:
        return count_tokens(string)

    for module in (utils, default, headline):
        module.num_tokens_from_string = counted  # type: ignore[attr-defined]


def run_ragas(url: str, paths: list[Path], size: int) -> int:
    from langchain_core.documents import Document
    from langchain_openai import ChatOpenAI, OpenAIEmbeddings
    from ragas.testset import TestsetGenerator
    from ragas.testset.persona import Persona

    offline_ragas_tokenizer()
    llm = ChatOpenAI(base_url=url, api_key="fake-key", model="fake-gpt", max_retries=0)  # type: ignore[arg-type]
    embeddings = OpenAIEmbeddings(
        base_url=url,
        api_key="fake-key",  # type: ignore[arg-type]
        model="fake-embed",
        check_embedding_ctx_length=False,
    )
    generator = TestsetGenerator.from_langchain(llm, embeddings)
    generator.persona_list = [
        Persona(
            name=PERSONA["name"],
            role_description=f"{PERSONA['description']} Goals: {', '.join(PERSONA['goals'])}.",
        )
    ]
    docs = [
        Document(page_content=p.read_text(encoding="utf-8"), metadata={"source": p.name})
        for p in paths
    ]
    testset = generator.generate_with_langchain_docs(docs, testset_size=size)
    return len(testset.samples)


def personagen_spec(url: str, paths: list[Path], questions: int, iterations: int) -> dict:
    return {
        "persona": PERSONA,
        "goal": {"name": "qa", "params": {"num_questions": questions}},
        "data": [{"path": str(p)} for p in paths],
        "run": {"max_iterations": iterations, "max_concurrency": 4, "cache": True},
        "llm": {
            "provider": "openai",
            "model": "fake-gpt",
            "base_url": url,
            "api_key_env": "PEER_COST_KEY",
            "embedding_model": "fake-embed",
            "structured_output": "json_schema",
        },
    }


def run_personagen(spec: dict, workdir: Path) -> tuple[int, int, Any]:
    import personagen

    result = personagen.run(spec, out_dir=workdir / "out", state_dir=workdir / "state")
    if result.status != "done":
        raise SystemExit(f"PersonaGen run ended {result.status}: {result.reason}")
    return len(result.pairs), len(result.accepted), result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--questions", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--docs", type=Path, default=None)
    args = parser.parse_args()
    paths = documents(args.docs)
    chars = sum(len(p.read_text(encoding="utf-8")) for p in paths)
    print(f"documents: {', '.join(p.name for p in paths)} ({chars:,} chars)")
    print(f"persona: {PERSONA['name']}; {args.questions} questions + 1 custom; "
          f"max_iterations {args.iterations}; Ragas testset_size {args.questions + 1}")  # fmt: skip
    print("tokens: one regex tokenizer (\\w+ runs and single punctuation marks) for both tools")

    with FakeOpenAIServer() as server, tempfile.TemporaryDirectory() as tmp:
        clock = time.perf_counter()
        ragas_rows = run_ragas(server.url, paths, args.questions + 1)
        ragas_wall = time.perf_counter() - clock
        ragas = server.reset()

        spec = personagen_spec(server.url, paths, args.questions, args.iterations)
        clock = time.perf_counter()
        produced, accepted, result = run_personagen(spec, Path(tmp))
        ours_wall = time.perf_counter() - clock
        ours = server.reset()
        meta_tokens = result.tokens

        clock = time.perf_counter()
        run_personagen(spec, Path(tmp))
        rerun_wall = time.perf_counter() - clock
        rerun = server.reset()
        sweep = next(
            (s for s in _stages(result) if s[0] == "optimize_rag"), ("optimize_rag", None)
        )[1]

    def per(counts: Counts, n: int) -> str:
        total = counts.prompt_tokens + counts.completion_tokens
        return f"{total / n:,.0f}" if n else "n/a"

    rows = [
        ("chat calls", ragas.chat_calls, ours.chat_calls),
        ("embedding calls", ragas.embedding_calls, ours.embedding_calls),
        ("prompt tokens", ragas.prompt_tokens, ours.prompt_tokens),
        ("completion tokens", ragas.completion_tokens, ours.completion_tokens),
        ("embedding tokens", ragas.embedding_tokens, ours.embedding_tokens),
        ("pairs produced", ragas_rows, produced),
        ("pairs accepted (judged)", None, accepted),
    ]
    print()
    print("| | Ragas TG | PersonaGen | PersonaGen / Ragas |")
    print("|---|---:|---:|---:|")
    for name, theirs, mine in rows:
        ratio = f"{mine / theirs:.2f}" if theirs else "-"
        print(f"| {name} | {'-' if theirs is None else f'{theirs:,}'} | {mine:,} | {ratio} |")
    ragas_per = (ragas.prompt_tokens + ragas.completion_tokens) / max(ragas_rows, 1)
    ours_produced = (ours.prompt_tokens + ours.completion_tokens) / max(produced, 1)
    ours_accepted = (ours.prompt_tokens + ours.completion_tokens) / max(accepted, 1)
    print(f"| tokens per produced pair | {ragas_per:,.0f} | {ours_produced:,.0f} | "
          f"{ours_produced / ragas_per:.2f} |")  # fmt: skip
    print(f"| tokens per accepted pair | - | {ours_accepted:,.0f} | "
          f"{ours_accepted / ragas_per:.2f} (vs Ragas per row) |")  # fmt: skip
    print(f"| wall time (s) | {ragas_wall:.1f} | {ours_wall:.1f} | {ours_wall / ragas_wall:.2f} |")
    print()
    print(f"PersonaGen unchanged rerun (cache on): {rerun_wall:.1f} s, "
          f"{rerun.chat_calls} chat calls, {rerun.embedding_calls} embedding calls")  # fmt: skip
    print(f"PersonaGen metadata tokens {meta_tokens:,} vs server chat tokens "
          f"{ours.prompt_tokens + ours.completion_tokens:,}; RAG sweep stage {sweep} s")  # fmt: skip
    print(f"Ragas schemas: {dict(ragas.schemas)}")
    print(f"PersonaGen schemas: {dict(ours.schemas)}")


def _stages(result: Any) -> list[tuple[str, float | None]]:
    import json

    if result.bundle_dir is None:
        return []
    meta = json.loads((Path(result.bundle_dir) / "metadata.json").read_text())
    stages = meta.get("stages") or meta.get("stage_runtimes") or []
    out = []
    for stage in stages if isinstance(stages, list) else []:
        if isinstance(stage, dict):
            out.append((str(stage.get("node")), stage.get("seconds")))
    if isinstance(stages, dict):
        out = [(k, v if isinstance(v, int | float) else None) for k, v in stages.items()]
    return out


if __name__ == "__main__":
    main()
