"""Quality on a labelled set: do answers find the gold passage, do judges tell right from wrong?

The set (benchmarks/data/quality/labels.yaml) holds questions over three original documents, each
with its gold passage (verbatim in the document), a correct answer written as a paraphrase and a
wrong but on-topic answer (`contradiction`: a changed figure, name or negation; `off_question`: a
true sentence copied from elsewhere in the same document that does not answer the question).

For one provider, each document is run three times through `personagen.api.arun`, with the
generated questions replaced by the labelled ones (an `after_questions` hook):

- `model`: the model answers them itself. Answer hit rate: the share of questions whose answer
  spans overlap the gold passage; also the share whose gold passage lies inside the retrieved
  contexts.
- `correct` / `wrong`: an `after_answers` hook replaces every answer with the labelled correct
  (or wrong) answer, and the bundle says where each pair ended: `qa.jsonl` (accepted, or
  unanswerable), `rejected.jsonl`, `unverified.jsonl` (pairs a judge that failed its self-test
  would accept: counted apart, never as accepted). From the two runs: the accept rate of right
  and of wrong answers (per wrong kind) and, per metric in the pairs' `scores`, the rank AUC of
  correct vs wrong answers; with the self-test's verdict when metadata.json has
  `judge_selftest`.

Usage:
    python benchmarks/quality.py [--provider fake|embedded|openai] [--base-url URL] [--model M]
        [--docs NAME ...] [--limit N] [--json] [--out DIR]

Works offline with `fake` and `embedded` (the default). Figures are printed, never asserted.
The runs share one state directory, so calls repeated across configurations (question
generation, answering, the judges' self-test probes) come from the response cache and cost no
tokens: the tokens shown are what each configuration really spent. With `--out`, finished runs
are journalled in `runs.jsonl` and a rerun with the same options continues from there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

DATA_DIR = Path(__file__).resolve().parent / "data" / "quality"
LABELS_FILE = DATA_DIR / "labels.yaml"
WRONG_KINDS = ("contradiction", "off_question")
Config = Literal["model", "correct", "wrong"]
CONFIGS: tuple[Config, ...] = ("model", "correct", "wrong")
OUTCOMES = ("accepted", "rejected", "unverified", "unanswerable", "missing")
# Where a pair can end, by bundle file. unverified.jsonl is optional (runs whose judges all
# passed their self-test, or builds before the self-test, do not write it).
BUNDLE_FILES = (
    ("qa.jsonl", None),
    ("rejected.jsonl", "rejected"),
    ("unverified.jsonl", "unverified"),
)


# --- the labelled set ------------------------------------------------------------------------


@dataclass(frozen=True)
class Persona:
    """The persona a document's questions are asked as."""

    doc: str
    name: str
    description: str
    expertise: str


@dataclass(frozen=True)
class Label:
    """One labelled question."""

    id: str
    doc: str
    question: str
    gold: str
    correct: str
    wrong: str
    wrong_kind: str


@dataclass(frozen=True)
class LabelSet:
    """The labelled questions and one persona per document."""

    personas: dict[str, Persona]
    questions: list[Label]

    @property
    def docs(self) -> list[str]:
        """Document file names in the order of their first question."""
        return list(dict.fromkeys(q.doc for q in self.questions))


def load_labels(path: Path = LABELS_FILE) -> LabelSet:
    """Read the labelled set; a malformed entry raises ValueError naming it."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict) or not isinstance(raw.get("questions"), list):
        raise ValueError(f"{path}: expected a mapping with a `questions` list")
    personas: dict[str, Persona] = {}
    for number, entry in enumerate(raw.get("personas") or [], 1):
        try:
            persona = Persona(**{k: str(entry[k]) for k in Persona.__dataclass_fields__})
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{path}: persona #{number} lacks {exc}") from None
        personas[persona.doc] = persona
    questions = []
    for number, entry in enumerate(raw["questions"], 1):
        try:
            values = {k: entry[k] for k in Label.__dataclass_fields__}
        except (KeyError, TypeError) as exc:
            name = entry.get("id", f"#{number}") if isinstance(entry, dict) else f"#{number}"
            raise ValueError(f"{path}: question {name} lacks {exc}") from None
        bad = [k for k, v in values.items() if not isinstance(v, str) or not v.strip()]
        if bad:
            raise ValueError(f"{path}: question {values['id']}: {', '.join(bad)} must be text")
        questions.append(Label(**values))
    return LabelSet(personas=personas, questions=questions)


def check_labels(labels: LabelSet, data_dir: Path = DATA_DIR) -> list[str]:
    """Every problem of the labelled set, one line each (empty when it is sound)."""
    problems: list[str] = []
    texts: dict[str, str] = {}
    for doc in labels.docs:
        if not (data_dir / doc).is_file():
            problems.append(f"document {doc} not found in {data_dir}")
            continue
        texts[doc] = (data_dir / doc).read_text(encoding="utf-8")
        if doc not in labels.personas:
            problems.append(f"document {doc} has no persona")
    for doc in labels.personas:
        if doc not in texts:
            problems.append(f"persona for {doc}, which has no questions")
    seen: Counter[str] = Counter(q.id for q in labels.questions)
    problems += [f"id {i} is used {n} times" for i, n in seen.items() if n > 1]
    for q in labels.questions:
        text = texts.get(q.doc)
        if q.wrong_kind not in WRONG_KINDS:
            problems.append(f"{q.id}: wrong_kind {q.wrong_kind!r} is not one of {WRONG_KINDS}")
        if q.correct.strip() == q.wrong.strip():
            problems.append(f"{q.id}: the correct and the wrong answer are the same")
        if text is None:
            continue
        gold = gold_range(text, q)
        if gold is None:
            problems.append(f"{q.id}: gold passage is not verbatim in {q.doc}")
        if q.correct in text:
            problems.append(f"{q.id}: the correct answer is copied from {q.doc}, not a paraphrase")
        if q.wrong_kind == "off_question":
            start = text.find(q.wrong)
            if start < 0:
                problems.append(f"{q.id}: off_question wrong answer is not verbatim in {q.doc}")
            elif gold is not None and _overlaps((start, start + len(q.wrong)), gold):
                problems.append(f"{q.id}: off_question wrong answer overlaps the gold passage")
    return problems


def gold_range(text: str, label: Label) -> tuple[int, int] | None:
    """Character range of the label's gold passage in the document text (None if absent)."""
    start = text.find(label.gold)
    return None if start < 0 else (start, start + len(label.gold))


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _covered(target: tuple[int, int], ranges: Sequence[tuple[int, int]]) -> bool:
    """True when the union of `ranges` covers all of `target`."""
    position = target[0]
    for start, end in sorted(ranges):
        if start > position:
            break
        position = max(position, end)
        if position >= target[1]:
            return True
    return position >= target[1]


# --- running PersonaGen ---------------------------------------------------------------------


@dataclass(frozen=True)
class Provider:
    """Which model to run (the spec's `llm` section)."""

    name: Literal["fake", "embedded", "openai"] = "embedded"
    base_url: str | None = None
    model: str | None = None

    def llm(self) -> dict[str, Any]:
        """The spec's `llm` mapping."""
        settings: dict[str, Any] = {"provider": self.name}
        if self.base_url:
            settings["base_url"] = self.base_url
        if self.model:
            settings["model"] = self.model
        return settings

    @property
    def label(self) -> str:
        """A one-line name for tables."""
        return " ".join(x for x in (self.name, self.model, self.base_url) if x)


def make_spec(doc_path: Path, persona: Persona, provider: Provider) -> dict[str, Any]:
    """The run spec for one document: minimal settings, the goal's own judges and baseline.

    One generated question is asked for (the `after_questions` hook replaces it), and the loop
    makes one pass (`max_iterations: 1`): a second pass would re-answer the failing pairs,
    overwriting the injected answers, so the bundle would no longer say what the judges made of
    them; it would also double the embedded model's time.
    """
    return {
        "persona": {
            "name": persona.name,
            "description": persona.description,
            "expertise": persona.expertise,
            "language": "en",
        },
        "goal": {"name": "qa", "params": {"num_questions": 1, "questions_per_excerpt": 1}},
        "data": [{"path": str(doc_path)}],
        "run": {"max_iterations": 1, "cache": True},
        "llm": provider.llm(),
    }


def replace_questions(questions: Sequence[str]) -> Callable[..., list[Any]]:
    """An `after_questions` hook: drop the generated questions, ask `questions` instead."""
    from personagen.state.hooks import HookItem

    def hook(items: list[Any], context: Any) -> list[Any]:
        return [HookItem(id=None, question=q) for q in questions]

    return hook


def inject_answers(answers: dict[str, str]) -> Callable[..., list[Any]]:
    """An `after_answers` hook: each pair's answer becomes `answers[question]`."""

    def hook(items: list[Any], context: Any) -> list[Any]:
        return [
            item.model_copy(update={"answer": answers[item.question]})
            if item.question in answers
            else item
            for item in items
        ]

    return hook


@dataclass
class PairResult:
    """What became of one labelled question in one run."""

    id: str
    outcome: str
    answer: str = ""
    scores: dict[str, float] = field(default_factory=dict)
    hit: bool = False
    gold_retrieved: bool = False
    reasons: list[str] = field(default_factory=list)


@dataclass
class RunOutcome:
    """One run of one document in one configuration."""

    doc: str
    config: str
    status: str
    tokens: int
    seconds: float
    pairs: list[PairResult]
    selftest: dict[str, Any] = field(default_factory=dict)
    run_id: str = ""


def bundle_rows(bundle_dir: Path | None) -> list[tuple[str, dict[str, Any]]]:
    """(outcome, row) for every pair in the bundle's qa / rejected / unverified files."""
    rows: list[tuple[str, dict[str, Any]]] = []
    if bundle_dir is None:
        return rows
    for name, outcome in BUNDLE_FILES:
        path = bundle_dir / name
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            rows.append((outcome or _qa_outcome(row), row))
    return rows


def _qa_outcome(row: dict[str, Any]) -> str:
    # qa.jsonl also holds questions the data cannot answer; an unverified flag (if the lead
    # chooses a flag over a file) is never counted as accepted.
    if row.get("status") == "unverified" or row.get("unverified") is True:
        return "unverified"
    if row.get("status") == "unanswerable" or row.get("answerable") is False:
        return "unanswerable"
    return "accepted" if row.get("status") in ("accepted", None) else str(row["status"])


def score_pairs(
    labels: Sequence[Label], rows: list[tuple[str, dict[str, Any]]], text: str, doc_id: str
) -> list[PairResult]:
    """Match bundle rows to labels by question; spans and contexts against the gold range."""
    by_question = {row["question"]: (outcome, row) for outcome, row in rows}
    results = []
    for label in labels:
        found = by_question.get(label.question)
        if found is None:
            results.append(PairResult(id=label.id, outcome="missing"))
            continue
        outcome, row = found
        gold = gold_range(text, label)
        if gold is None:
            raise ValueError(f"{label.id}: gold passage is not in {label.doc}")

        def ranges(key: str, row: dict[str, Any] = row) -> list[tuple[int, int]]:
            return [(s["start"], s["end"]) for s in row.get(key, []) if s["doc_id"] == doc_id]

        results.append(
            PairResult(
                id=label.id,
                outcome=outcome,
                answer=row.get("answer") or "",
                scores={k: float(v) for k, v in (row.get("scores") or {}).items()},
                hit=any(_overlaps(r, gold) for r in ranges("spans")),
                reasons=[str(r) for r in row.get("reasons") or []],
                gold_retrieved=_covered(gold, ranges("contexts")),
            )
        )
    return results


def load_document(doc_path: Path) -> tuple[str, str]:
    """(document id, extracted text) as PersonaGen sees the file: spans index this text."""
    from personagen.data.loaders import load_source
    from personagen.state.spec import DataSource

    (document,) = load_source(DataSource(path=str(doc_path)))
    return document.ref.id, document.text


async def run_doc(
    doc: str,
    labels: Sequence[Label],
    persona: Persona,
    provider: Provider,
    config: Config,
    work_dir: Path,
    data_dir: Path = DATA_DIR,
) -> RunOutcome:
    """Run one document in one configuration and say what became of each labelled question."""
    from personagen.api import arun

    doc_path = data_dir / doc
    doc_id, text = load_document(doc_path)
    hooks: dict[str, Any] = {"after_questions": replace_questions([q.question for q in labels])}
    if config != "model":
        hooks["after_answers"] = inject_answers(
            {q.question: q.correct if config == "correct" else q.wrong for q in labels}
        )
    started = time.monotonic()
    result = await arun(
        make_spec(doc_path, persona, provider),
        out_dir=work_dir / "out",
        state_dir=work_dir / "state",  # shared: answer calls repeat across configs (cache)
        hooks=hooks,
    )
    seconds = time.monotonic() - started
    metadata = result.metadata
    return RunOutcome(
        doc=doc,
        config=config,
        status=result.status,
        tokens=result.tokens,
        seconds=round(seconds, 2),
        pairs=score_pairs(labels, bundle_rows(result.bundle_dir), text, doc_id),
        selftest=dict(metadata.get("judge_selftest") or {}),
        run_id=result.run_id,
    )


async def run_all(
    labels: LabelSet,
    provider: Provider,
    work_dir: Path,
    *,
    docs: Sequence[str] | None = None,
    limit: int | None = None,
    configs: Sequence[Config] = CONFIGS,
    progress: Callable[[str], None] | None = None,
    journal: Path | None = None,
) -> list[RunOutcome]:
    """Every (document, configuration) run, one after another (the embedded model is one).

    With a `journal` file, each finished run is appended to it, and runs it already holds (same
    provider, document, configuration and questions) are taken from it instead of run again:
    an hour-long embedded benchmark that is stopped continues where it was.
    """
    code = code_fingerprint()
    done = read_journal(journal, provider, code) if journal is not None else {}
    outcomes = []
    for doc in docs or labels.docs:
        questions = [q for q in labels.questions if q.doc == doc][:limit]
        for config in configs:
            key = (doc, config, tuple(q.id for q in questions))
            outcome = done.get(key)
            if outcome is None:
                outcome = await run_doc(
                    doc, questions, labels.personas[doc], provider, config, work_dir
                )
                if journal is not None:
                    with journal.open("a", encoding="utf-8") as out:
                        line = {
                            "provider": provider.label,
                            "code": code,
                            "questions": key[2],
                            **asdict(outcome),
                        }
                        out.write(json.dumps(line) + "\n")
            if progress is not None:
                progress(
                    f"{doc} {config}: {outcome.status}, {outcome.tokens} tokens, "
                    f"{outcome.seconds:.1f} s" + (" (from the journal)" if key in done else "")
                )
            outcomes.append(outcome)
    return outcomes


def code_fingerprint() -> str:
    """A hash of PersonaGen's code and prompts: journalled runs of other code are stale."""
    import hashlib

    import personagen

    root = Path(personagen.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def read_journal(
    path: Path, provider: Provider, code: str
) -> dict[tuple[str, str, tuple[str, ...]], RunOutcome]:
    """Finished runs of this code recorded in a journal, by (document, config, question ids)."""
    found: dict[tuple[str, str, tuple[str, ...]], RunOutcome] = {}
    if not path.is_file():
        return found
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if row.pop("provider") != provider.label or row.pop("code", None) != code:
                continue
            questions = tuple(row.pop("questions"))
            pairs = [PairResult(**p) for p in row.pop("pairs")]
            outcome = RunOutcome(**row, pairs=pairs)
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}, line {number}: not a run record ({exc})") from None
        found[(outcome.doc, outcome.config, questions)] = outcome
    return found


# --- figures ----------------------------------------------------------------------------------


def selftest_verdicts(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per-metric verdicts from metadata.json's `judge_selftest`.

    Takes the run's report (`{"metrics": {name: verdict}, "tokens": .., ...}`) or a bare
    `{name: verdict}` mapping; anything that is not a verdict mapping is left out.
    """
    nested = report.get("metrics")
    metrics: dict[str, Any] = nested if isinstance(nested, dict) else report
    return {
        name: {k: v for k, v in verdict.items() if k in ("auc", "passed", "probes", "tokens")}
        for name, verdict in metrics.items()
        if isinstance(verdict, dict) and "passed" in verdict
    }


def auc(positives: Sequence[float], negatives: Sequence[float]) -> float | None:
    """Rank AUC: P(positive > negative), ties counted 0.5; None without both classes."""
    if not positives or not negatives:
        return None
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def _rate(count: int, total: int) -> dict[str, Any]:
    return {"rate": round(count / total, 3) if total else None, "n": count, "of": total}


def summarize(
    outcomes: Sequence[RunOutcome], labels: LabelSet, provider: Provider
) -> dict[str, Any]:
    """The benchmark's figures from its runs (a JSON-ready mapping)."""
    kinds = {q.id: q.wrong_kind for q in labels.questions}
    by_config: dict[str, list[PairResult]] = {c: [] for c in CONFIGS}
    runs: dict[str, dict[str, Any]] = {}
    selftests: dict[str, list[dict[str, Any]]] = {}
    for o in outcomes:
        by_config[o.config].extend(o.pairs)
        run = runs.setdefault(o.config, {"runs": 0, "tokens": 0, "seconds": 0.0, "statuses": []})
        run["runs"] += 1
        run["tokens"] += o.tokens
        run["seconds"] = round(run["seconds"] + o.seconds, 2)
        run["statuses"].append(o.status)
        run["outcomes"] = dict(Counter(p.outcome for p in by_config[o.config]))
        for metric, verdict in selftest_verdicts(o.selftest).items():
            selftests.setdefault(metric, []).append({"doc": o.doc, "config": o.config, **verdict})
        if isinstance(o.selftest.get("tokens"), int):
            run["selftest_tokens"] = run.get("selftest_tokens", 0) + o.selftest["tokens"]
    model = by_config["model"]
    correct, wrong = by_config["correct"], by_config["wrong"]
    accepted_wrong = {
        kind: _rate(
            sum(p.outcome == "accepted" for p in wrong if kinds[p.id] == kind),
            sum(kinds[p.id] == kind for p in wrong),
        )
        for kind in WRONG_KINDS
    }
    metrics = sorted({m for p in (*correct, *wrong) for m in p.scores})
    aucs = {}
    for metric in metrics:
        pos = [p.scores[metric] for p in correct if metric in p.scores]
        neg = {
            k: [p.scores[metric] for p in wrong if metric in p.scores and kinds[p.id] == k]
            for k in WRONG_KINDS
        }
        every = [s for scores in neg.values() for s in scores]
        aucs[metric] = {
            "auc": _round(auc(pos, every)),
            "n_correct": len(pos),
            "n_wrong": len(every),
            **{f"auc_{k}": _round(auc(pos, neg[k])) for k in WRONG_KINDS},
        }
    return {
        "provider": provider.label,
        "docs": sorted({o.doc for o in outcomes}),
        "questions": len(model) or len(correct),
        "runs": runs,
        "answer_hit_rate": _rate(sum(p.hit for p in model), len(model)),
        "gold_retrieved_rate": _rate(sum(p.gold_retrieved for p in model), len(model)),
        "accept_rate_correct": _rate(sum(p.outcome == "accepted" for p in correct), len(correct)),
        "accept_rate_wrong": _rate(sum(p.outcome == "accepted" for p in wrong), len(wrong)),
        "accept_rate_wrong_by_kind": accepted_wrong,
        "unverified": {
            "correct": sum(p.outcome == "unverified" for p in correct),
            "wrong": sum(p.outcome == "unverified" for p in wrong),
        },
        "wrong_accepted": sorted(p.id for p in wrong if p.outcome == "accepted"),
        "auc": aucs,
        "judge_selftest": selftests,
        "rejection_reasons": {
            config: dict(
                Counter(
                    kind
                    for p in pairs
                    if p.outcome != "accepted"
                    for kind in {reason_kind(r) for r in p.reasons}
                ).most_common(5)
            )
            for config, pairs in by_config.items()
        },
    }


def reason_kind(reason: str) -> str:
    """A rejection reason without its figures, so that reasons group by kind."""
    head = reason.split(":", 1)[0]
    return re.sub(r"\d+(?:\.\d+)?", "#", head).strip()


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _fmt(rate: dict[str, Any]) -> str:
    if rate["rate"] is None:
        return "n/a (0)"
    return f"{rate['rate']:.2f} ({rate['n']}/{rate['of']})"


def render_table(summary: dict[str, Any]) -> str:
    """One compact, fixed-width table of the figures for one provider."""
    lines = [
        f"== quality: provider {summary['provider']}; {len(summary['docs'])} docs, "
        f"{summary['questions']} questions ==",
        f"{'run':<8} {'runs':>4} {'tokens':>8} {'selftest':>8} {'wall s':>8}  "
        + " ".join(f"{o:>12}" for o in OUTCOMES),
    ]
    for config in CONFIGS:
        run = summary["runs"].get(config)
        if run is None:
            continue
        counts = run.get("outcomes", {})
        lines.append(
            f"{config:<8} {run['runs']:>4} {run['tokens']:>8} "
            f"{run.get('selftest_tokens', '-'):>8} {run['seconds']:>8.1f}  "
            + " ".join(f"{counts.get(o, 0):>12}" for o in OUTCOMES)
        )
        failed = [s for s in run["statuses"] if s != "done"]
        if failed:
            lines.append(f"{'':<8} run statuses other than done: {', '.join(failed)}")
        reasons = summary["rejection_reasons"].get(config)
        if reasons:
            lines.append(
                f"{'':<8} why not accepted: " + "; ".join(f"{n}x {r}" for r, n in reasons.items())
            )
    by_kind = summary["accept_rate_wrong_by_kind"]
    lines += [
        f"answer hit rate (spans overlap gold)  {_fmt(summary['answer_hit_rate'])}    "
        f"gold inside retrieved contexts  {_fmt(summary['gold_retrieved_rate'])}",
        f"accept rate  correct {_fmt(summary['accept_rate_correct'])}    "
        f"wrong {_fmt(summary['accept_rate_wrong'])}  ("
        + ", ".join(f"{k} {_fmt(v)}" for k, v in by_kind.items())
        + ")",
        f"unverified   correct {summary['unverified']['correct']}    "
        f"wrong {summary['unverified']['wrong']}"
        + (
            f"    wrong answers accepted: {', '.join(summary['wrong_accepted'])}"
            if summary["wrong_accepted"]
            else ""
        ),
        f"{'metric':<20} {'AUC':>6} {'n corr/wrong':>13} {'AUC contra':>11} {'AUC off-q':>10}"
        "  self-test",
    ]

    def num(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    metrics = sorted(set(summary["auc"]) | set(summary["judge_selftest"]))
    for metric in metrics:
        row = summary["auc"].get(metric, {})
        verdicts = summary["judge_selftest"].get(metric, [])
        lines.append(
            f"{metric:<20} {num(row.get('auc')):>6} "
            f"{str(row.get('n_correct', 0)) + '/' + str(row.get('n_wrong', 0)):>13} "
            f"{num(row.get('auc_contradiction')):>11} {num(row.get('auc_off_question')):>10}"
            f"  {_selftest_verdict(verdicts)}"
        )
    if not metrics:
        lines.append("(no scores: no pair was judged)")
    return "\n".join(lines)


def _selftest_verdict(verdicts: list[dict[str, Any]]) -> str:
    if not verdicts:
        return "-"
    passed = sum(bool(v.get("passed")) for v in verdicts)
    aucs = [v["auc"] for v in verdicts if isinstance(v.get("auc"), int | float)]
    spread = f", AUC {min(aucs):.2f}-{max(aucs):.2f}" if aucs else ""
    return f"passed {passed}/{len(verdicts)} runs{spread}"


# --- command line ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider", choices=["fake", "embedded", "openai"], default="embedded")
    parser.add_argument("--base-url", help="an OpenAI-compatible endpoint (provider openai)")
    parser.add_argument("--model", help="the model name (provider openai)")
    parser.add_argument("--docs", nargs="+", help="document file names (or stems) to run")
    parser.add_argument("--limit", type=int, help="labelled questions per document at most")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--out",
        type=Path,
        help="keep run bundles, state and runs.jsonl here; a rerun takes finished runs from it",
    )
    parser.add_argument("--labels", type=Path, default=LABELS_FILE, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    if (args.base_url or args.model) and args.provider != "openai":
        parser.error("--base-url and --model need --provider openai")
    return args


def select_docs(labels: LabelSet, wanted: Sequence[str] | None) -> list[str]:
    """The documents named by --docs (file names or stems), in the set's order."""
    if not wanted:
        return labels.docs
    chosen = []
    for name in wanted:
        match = [d for d in labels.docs if name in (d, Path(d).stem)]
        if not match:
            raise SystemExit(f"--docs: no document {name!r} (documents: {', '.join(labels.docs)})")
        chosen.extend(match)
    return list(dict.fromkeys(chosen))


async def amain(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print and return its figures."""
    args = parse_args(argv)
    os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")
    labels = load_labels(args.labels)
    problems = check_labels(labels, args.labels.parent)
    if problems:
        raise SystemExit(f"{args.labels}: " + "; ".join(problems))
    provider = Provider(args.provider, args.base_url, args.model)
    docs = select_docs(labels, args.docs)
    with tempfile.TemporaryDirectory(prefix="pg-quality-") as tmp:
        work_dir = args.out or Path(tmp)
        work_dir.mkdir(parents=True, exist_ok=True)

        def progress(line: str) -> None:
            print(line, file=sys.stderr, flush=True)

        outcomes = await run_all(
            labels,
            provider,
            work_dir,
            docs=docs,
            limit=args.limit,
            progress=progress,
            journal=args.out / "runs.jsonl" if args.out else None,
        )
    summary = summarize(outcomes, labels, provider)
    if args.json:
        summary["runs_detail"] = [
            {**asdict(o), "pairs": [asdict(p) for p in o.pairs]} for o in outcomes
        ]
        print(json.dumps(summary, indent=2))
    else:
        print(render_table(summary))
        if args.out:
            print(f"bundles and state: {args.out}")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    asyncio.run(amain(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
