"""Question hygiene on the embedded default: echoes of the prompt's examples, runaway text.

Runs the real graph of the embedded default model (no network) up to the generated questions
(`compose_persona -> resolve_goal -> load_data -> generate_questions`, then stops) over
examples/home-buying and each document of benchmarks/data/quality/ (its persona from
labels.yaml), and prints for every question the model wrote:

- questions generated (the model's raw questions, before hygiene and dedup);
- share free of prompt-example echo, share free of runaway text (cut or rejected), and free
  of both, as the model wrote them (what the run kept before question hygiene existed);
- share kept after hygiene, and the share of the run's final questions free of both;
- every removed or cut question with its reason.

Every raw question is seen by wrapping `QuestionHygiene.check` (the node's own call), so the
figures are those of the run itself.

Usage::

    python benchmarks/question_hygiene.py [--questions 8] [--only home-buying] [--json out.json]
    python benchmarks/question_hygiene.py --goal my-qa.yaml   # another question prompt
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from personagen.api import _Session  # noqa: E402
from personagen.evaluators.question_hygiene import QuestionHygiene, Verdict  # noqa: E402
from personagen.graph.builder import build_graph  # noqa: E402
from personagen.specfile import load_spec, parse_spec  # noqa: E402
from personagen.state.spec import RunSpec  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "home-buying" / "spec.yaml"
QUALITY = ROOT / "benchmarks" / "data" / "quality"


@dataclass
class Seen:
    """One raw question and what hygiene made of it."""

    verdict: Verdict
    echo: str | None
    case: str

    @property
    def runaway(self) -> bool:
        return bool(self.verdict.cut) or self.verdict.reason == "runaway text"


@dataclass
class Case:
    """One benchmark case: a spec and what came out."""

    name: str
    spec: RunSpec
    seen: list[Seen] = field(default_factory=list)
    final: list[str] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def cases(questions: int, only: str | None, goal: str | None) -> list[Case]:
    """The example spec and one spec per quality document (when the directory exists)."""
    found: list[Case] = []
    spec = load_spec(EXAMPLE)
    found.append(Case("home-buying", spec))
    labels = QUALITY / "labels.yaml"
    if labels.is_file():
        personas = yaml.safe_load(labels.read_text(encoding="utf-8")).get("personas", [])
        for persona in personas:
            doc = QUALITY / persona["doc"]
            if not doc.is_file():
                continue
            data = {
                "persona": {k: persona[k] for k in ("name", "description", "expertise")},
                "goal": {"name": "qa"},
                "data": [{"path": str(doc)}],
                "llm": {"provider": "embedded"},
            }
            found.append(Case(persona["doc"], parse_spec(data, origin=str(labels))))
    for case in found:
        if goal is not None:
            case.spec.goal.name = str(Path(goal).resolve())
        case.spec.goal.params["num_questions"] = questions
        case.spec.run.cache = False  # measure the model, not a cache of an earlier prompt
    return [c for c in found if only is None or only in c.name]


async def run_case(case: Case, state_dir: Path) -> None:
    """Drive the graph up to the generated questions and collect what hygiene saw."""
    from langgraph.checkpoint.memory import InMemorySaver

    from personagen.graph.checkpoint import serializer

    session = _Session(
        out_dir=state_dir / "out",
        state_dir=state_dir,
        checkpoint=None,
        chat_model=None,
        embeddings=None,
        progress=None,
    )
    context = session.context(case.name, case.spec, max_tokens=None)
    graph = build_graph().compile(
        checkpointer=InMemorySaver(serde=serializer()), interrupt_after=["generate_questions"]
    )
    config: Any = {"configurable": {"thread_id": case.name}}
    original = QuestionHygiene.check

    def watched(self: QuestionHygiene, question: str, source: str = "") -> Verdict:
        verdict = original(self, question, source)
        echo = self.echo_of(verdict.question or " ".join(question.split()), source)
        case.seen.append(Seen(verdict=verdict, echo=echo, case=case.name))
        return verdict

    QuestionHygiene.check = watched  # type: ignore[method-assign]
    started = time.perf_counter()
    try:
        await graph.ainvoke({"spec": case.spec, "run_id": case.name}, config, context=context)
        values = (await graph.aget_state(config)).values
    finally:
        QuestionHygiene.check = original  # type: ignore[method-assign]
        context.close()
    case.seconds = time.perf_counter() - started
    case.final = [p.question for p in values.get("pairs", {}).values() if p.origin == "generated"]
    case.duplicates = list(values.get("removed_duplicates", []))


def share(part: int, whole: int) -> str:
    return f"{part}/{whole} ({part / whole:.0%})" if whole else "0/0"


def report(all_cases: list[Case]) -> dict[str, Any]:
    """Print the figures and return them."""
    seen = [s for c in all_cases for s in c.seen]
    total = len(seen)
    no_echo = sum(1 for s in seen if s.echo is None)
    no_runaway = sum(1 for s in seen if not s.runaway)
    clean = sum(1 for s in seen if s.echo is None and not s.runaway)
    kept = sum(1 for s in seen if s.verdict.kept)
    hygiene = QuestionHygiene()
    final = [q for c in all_cases for q in c.final]
    final_clean = 0
    for case in all_cases:
        for question in case.final:
            match = next((s for s in case.seen if s.verdict.question == question), None)
            if match is not None and match.echo is None and not match.verdict.cut:
                final_clean += 1
            elif match is None and hygiene.check(question).kept:
                final_clean += 1
    print("\nper case:")
    for case in all_cases:
        n = len(case.seen)
        ok = sum(1 for s in case.seen if s.echo is None and not s.runaway)
        print(
            f"  {case.name:28} generated {n:3}  clean as written {share(ok, n):>12}  "
            f"final {len(case.final):2}  duplicates {len(case.duplicates)}  {case.seconds:.0f} s"
        )
    print("\ntotals (the model's raw questions):")
    print(f"  questions generated            {total}")
    print(f"  free of prompt-example echo    {share(no_echo, total)}")
    print(f"  free of runaway text           {share(no_runaway, total)}")
    print(f"  free of both, as written       {share(clean, total)}")
    print(f"  kept after hygiene             {share(kept, total)}")
    print(f"  final questions (after dedup)  {len(final)}")
    print(f"  final questions free of both   {share(final_clean, len(final))}")
    print("\nremoved or cut:")
    for s in seen:
        if s.verdict.kept and not s.verdict.cut:
            continue
        action = "cut    " if s.verdict.kept else "removed"
        why = s.verdict.reason or "runaway text"
        print(f"  [{s.case}] {action} {s.verdict.original!r}")
        print(f"      {why}: {s.verdict.detail}")
    print("\nechoes kept (should be none):")
    for s in seen:
        if s.verdict.kept and s.echo:
            print(f"  [{s.case}] {s.verdict.question!r}: {s.echo}")
    print("\nfinal questions:")
    for case in all_cases:
        for question in case.final:
            print(f"  [{case.name}] {question}")
    return {
        "generated": total,
        "free_of_echo": no_echo,
        "free_of_runaway": no_runaway,
        "free_of_both": clean,
        "kept_after_hygiene": kept,
        "final": len(final),
        "final_clean": final_clean,
        "cases": {
            c.name: {
                "raw": [
                    {
                        "question": s.verdict.original,
                        "kept_as": s.verdict.question,
                        "reason": s.verdict.reason,
                        "detail": s.verdict.detail,
                        "echo": s.echo,
                    }
                    for s in c.seen
                ],
                "final": c.final,
                "duplicates": c.duplicates,
            }
            for c in all_cases
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=8, help="num_questions per case")
    parser.add_argument("--only", help="run only cases whose name contains this")
    parser.add_argument(
        "--goal", help="a goal file (e.g. 'extends: qa' with another question prompt) to try"
    )
    parser.add_argument("--json", type=Path, help="also write the figures and questions here")
    args = parser.parse_args()
    selected = cases(args.questions, args.only, args.goal)
    if not selected:
        sys.exit(f"no case matches {args.only!r}")
    with tempfile.TemporaryDirectory(prefix="pg-hygiene-") as tmp:
        for case in selected:
            print(f"running {case.name} ...", flush=True)
            asyncio.run(run_case(case, Path(tmp) / case.name))
    figures = report(selected)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()
