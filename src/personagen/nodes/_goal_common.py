"""Helpers shared by the summary and rewrite loop nodes. No node logic.

Grounding claims in the data, checking a generated text against the spec's constraints,
gating an output on the baseline, and scoring a pass. The constraint semantics are the Q/A
loop's (`personagen.evaluators.checks`): a generated text is checked as the `answer` field,
so rules with `applies_to: answer` or `both` apply and question-only rules do not.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from statistics import fmean
from typing import Any, TypeVar

from langchain_core.messages import BaseMessage
from pydantic import BaseModel

from personagen.errors import StructuredOutputError
from personagen.evaluators.constraints import check_constraints_of
from personagen.evaluators.grounding import find_quote, ground_quotes
from personagen.graph.context import RunContext
from personagen.llm._text import content_words
from personagen.nodes._common import prompt_vars
from personagen.prompts.library import render
from personagen.prompts.schemas_goals import ClaimsOut, SummaryDraftOut
from personagen.state.documents import Span
from personagen.state.goal import ResolvedGoal
from personagen.state.graph import State
from personagen.state.items import PersonaProfile, RetrievedContext
from personagen.state.metadata import IterationReport
from personagen.state.outputs import (
    Claim,
    GoalLoopState,
    JudgedOutput,
    SummaryDraft,
    SummaryNote,
    SummarySection,
)
from personagen.state.results import Violation
from personagen.state.spec import Constraints

T = TypeVar("T", bound=BaseModel)
J = TypeVar("J", bound=JudgedOutput)


class LoopState(State, GoalLoopState, total=False):
    """The graph state with the summary and rewrite loops' keys.

    The loops' nodes and routers are typed with it, so LangGraph hands them these keys
    whether or not `State` itself declares them.
    """


# --- prompts and model calls --------------------------------------------------------------


def goal_messages(
    ctx: RunContext, goal: ResolvedGoal, persona: PersonaProfile, key: str, **variables: Any
) -> list[BaseMessage]:
    """Render one of the goal's prompts with the variables every prompt gets plus `variables`.

    Every prompt sees the persona, their language, the user's supplemental prompts
    (`user_prompts`) and the goal's params (`params`).
    """
    return render(
        goal.prompts[key],
        embedded=ctx.llm.small_model,
        **prompt_vars(persona, goal),
        params=goal.params,
        **variables,
    )


async def ask(ctx: RunContext, messages: list[BaseMessage], schema: type[T]) -> T:
    """One structured call (the client keeps it within the run's concurrency limit)."""
    return await ctx.llm.structured(messages, schema)


def to_context(span: Span, ident: str) -> RetrievedContext:
    """A span of source text as a context the grounding helpers search first."""
    return RetrievedContext(
        chunk_id=ident,
        doc_id=span.doc_id,
        start=span.start,
        end=span.end,
        score=1.0,
        text=span.text,
    )


def ground(
    quote: str, contexts: list[RetrievedContext], doc_ids: Sequence[str], ctx: RunContext
) -> list[Span]:
    """Spans of `quote`: in the contexts, their documents, then every document of the run."""
    spans, _ = ground_quotes([quote], contexts, ctx.store.get_text)
    if spans:
        return spans
    searched = {c.doc_id for c in contexts}
    for doc_id in doc_ids:
        if doc_id in searched:
            continue
        text = ctx.store.get_text(doc_id)
        found = find_quote(quote, text)
        if found:
            return [
                Span(doc_id=doc_id, start=found[0], end=found[1], text=text[found[0] : found[1]])
            ]
    return []


def grounded_quote(
    candidates: Sequence[str],
    contexts: list[RetrievedContext],
    doc_ids: Sequence[str],
    ctx: RunContext,
) -> tuple[str, list[Span]]:
    """The first candidate found in the data and its spans; else the first one and no spans.

    The first candidate is the quote the model gave, found as the Q/A loop finds quotes
    (exactly, then ignoring whitespace and case, then fuzzily). The others are texts that may
    be source text copied verbatim (a note's point, a claim): small models often copy the
    sentence there and garble the quote. They count only when found word for word, so a
    copied sentence with one number changed is never taken as supported.
    """
    candidates = [c.strip() for c in candidates]
    for position, candidate in enumerate(candidates):
        if not candidate:
            continue
        spans = ground(candidate, contexts, doc_ids, ctx)
        if spans and (position == 0 or _same_words(spans[0].text, candidate)):
            return candidate, spans
    return (candidates[0] if candidates else ""), []


def _same_words(a: str, b: str) -> bool:
    return " ".join(a.split()).lower() == " ".join(b.split()).lower()


def batches(texts: Sequence[str], max_chars: int) -> list[list[int]]:
    """Indices of `texts` grouped in order, each group at most `max_chars` (or one text)."""
    groups: list[list[int]] = []
    size = 0
    for index, text in enumerate(texts):
        if groups and size + len(text) <= max_chars:
            groups[-1].append(index)
            size += len(text)
        else:
            groups.append([index])
            size = len(text)
    return groups


def rank_notes(notes: Sequence[SummaryNote], text: str, k: int) -> list[SummaryNote]:
    """The `k` notes sharing the most content words with `text` (ties in note order)."""
    wanted = set(content_words(text))

    def overlap(note: SummaryNote) -> int:
        return len(wanted & set(content_words(f"{note.point} {note.quote}")))

    ranked = sorted(enumerate(notes), key=lambda pair: (-overlap(pair[1]), pair[0]))
    return [note for _, note in ranked[:k]]


# --- judging ------------------------------------------------------------------------------


async def judge_claims(
    ctx: RunContext,
    goal: ResolvedGoal,
    persona: PersonaProfile,
    *,
    parts: dict[int, str],
    evidence: list[RetrievedContext],
    doc_ids: Sequence[str],
) -> list[Claim]:
    """The claims of the given parts of an output (judged together), grounded in the data.

    Each claim gets the spans its quote was found at, and the index of the part it shares
    the most words with.

    Raises:
        StructuredOutputError: the judge's output could not be obtained.
    """
    output = "\n\n".join(parts.values())
    messages = goal_messages(
        ctx, goal, persona, "claims", sources=[c.text for c in evidence], output=output
    )
    out = await ask(ctx, messages, ClaimsOut)
    words = {index: set(content_words(text)) for index, text in parts.items()}
    claims = []
    for item in out.claims:
        text, quote = item.claim.strip(), item.quote.strip()
        if not text:
            continue
        quote, spans = grounded_quote([quote, text], evidence, doc_ids, ctx)
        said = set(content_words(text))
        part = max(words, key=lambda index: (len(words[index] & said), -index))
        claims.append(Claim(text=text, quote=quote, supported=bool(spans), spans=spans, part=part))
    return claims


def faithfulness(claims: Sequence[Claim]) -> tuple[float | None, str]:
    """Share of claims found in the sources, and the reason in words."""
    if not claims:
        return None, "faithfulness could not be judged: the judge listed no claims"
    supported = sum(c.supported for c in claims)
    reason = f"{supported} of {len(claims)} claim(s) found in the sources"
    missing = [c.text for c in claims if not c.supported]
    if missing:
        reason += "; not supported by the sources: " + "; ".join(
            f'"{t[:100]}"' for t in missing[:4]
        )
    return round(supported / len(claims), 4), reason


def failure_reason(exc: BaseException) -> str:
    """The reason a judge call failed on an item; anything but a parse failure propagates."""
    if isinstance(exc, StructuredOutputError):
        return str(exc)
    raise exc


def score_claims(
    claim_results: Sequence[list[Claim] | BaseException],
    metrics: Collection[str],
    scores: dict[str, float],
    reasons: dict[str, str],
) -> list[Claim]:
    """Collect the judged claims; record faithfulness in `scores`/`reasons` when asked for."""
    claims: list[Claim] = []
    failures = [failure_reason(r) for r in claim_results if isinstance(r, BaseException)]
    for result in claim_results:
        if not isinstance(result, BaseException):
            claims.extend(result)
    if "faithfulness" in metrics:
        value, reason = faithfulness(claims)
        if failures:
            value, reason = None, f"faithfulness could not be judged: {failures[0]}"
        if value is not None:
            scores["faithfulness"] = value
        reasons["faithfulness"] = reason
    return claims


async def plugin_scores(
    goal: ResolvedGoal,
    builtin: Sequence[str],
    persona: PersonaProfile,
    *,
    task: str,
    output: str,
    contexts: list[str],
) -> tuple[dict[str, float], dict[str, str]]:
    """Scores of the goal's plugin metrics (those not built into the loop)."""
    extra = [m for m in goal.metrics if m not in builtin]
    if not extra:
        return {}, {}
    from personagen.evaluators.plugins import score_plugin_metric

    scores: dict[str, float] = {}
    reasons: dict[str, str] = {}
    for metric in extra:
        value, reason = await score_plugin_metric(
            metric, question=task, answer=output, contexts=contexts, persona=persona
        )
        scores[metric] = round(value, 4)
        reasons[metric] = reason
    return scores, reasons


async def output_violations(
    ctx: RunContext,
    constraints: Constraints,
    text: str,
    *,
    language: str,
    check_language: bool,
) -> list[Violation]:
    """Constraint violations of a generated text (checked as the `answer` field)."""
    return await check_constraints_of(
        ctx.llm,
        constraints,
        question=None,
        answer=text,
        language=language if check_language else None,
        semaphore=ctx.semaphore,
    )


# --- gating and scoring -------------------------------------------------------------------


def gate(item: J, baseline: dict[str, float], extra: Sequence[str] = ()) -> J:
    """Accept the output when every baselined metric is met and nothing is violated."""
    reasons: list[str] = []
    for metric, minimum in baseline.items():
        value = item.scores.get(metric)
        why = item.reasons.get(metric, "")
        if value is None:
            reasons.append(why or f"{metric} could not be judged")
        elif value < minimum:
            reasons.append(f"{metric} {value:.2f} is below {minimum:.2f}: {why}".rstrip(": "))
    reasons.extend(extra)
    reasons.extend(str(v.reason) for v in item.violations)
    return item.model_copy(
        update={"status": "failing" if reasons else "accepted", "feedback": reasons}
    )


def pass_report(
    items: Sequence[JudgedOutput], baseline: dict[str, float], iteration: int
) -> IterationReport:
    """Scores and counts of a pass: means over judged outputs, shortfalls, the verdict.

    The baseline is met when at least one output is accepted and none is failing.
    """
    judged = [i for i in items if i.status in ("accepted", "failing")]
    metrics = sorted({m for i in judged for m in i.scores})
    scores = {
        m: round(fmean(i.scores[m] for i in judged if m in i.scores), 4)
        for m in metrics
        if any(m in i.scores for i in judged)
    }
    statuses = Counter(i.status for i in items)
    accepted, failing = statuses["accepted"], statuses["failing"]
    shortfalls: list[str] = []
    for metric, minimum in baseline.items():
        below = [i for i in judged if i.scores.get(metric, -1.0) < minimum]
        if below:
            shortfalls.append(
                f"{metric}: {len(below)} output(s) below {minimum:.2f} "
                f"(mean {scores.get(metric, 0):.2f})"
            )
    rules = Counter(v.rule for i in items if i.status == "failing" for v in i.violations)
    shortfalls.extend(f"constraint {rule}: {n} violation(s)" for rule, n in rules.most_common())
    errors = sum(1 for i in items if i.status == "failing" and i.error)
    if errors:
        shortfalls.append(f"{errors} output(s) could not be generated")
    if not accepted and not failing:
        shortfalls.append("nothing was produced to judge")
    return IterationReport(
        iteration=iteration,
        scores=scores,
        accepted=accepted,
        failing=failing,
        unanswerable=statuses["not_applicable"],
        baseline_met=accepted >= 1 and failing == 0,
        shortfalls=shortfalls,
    )


def loop_ends(report: IterationReport, iteration: int, max_iterations: int) -> bool:
    """Whether the pass just scored is the last: baseline met, nothing to refine, or no time."""
    return report.baseline_met or report.failing == 0 or iteration >= max_iterations


def reject_failing(items: dict[str, J]) -> dict[str, J]:
    """At the last pass, failing outputs become rejected (their reasons stay with them)."""
    return {
        key: item.model_copy(update={"status": "rejected"})
        for key, item in items.items()
        if item.status == "failing"
    }


def snapshot(item: JudgedOutput, text: str) -> dict[str, object]:
    """An earlier version of an output, kept in its history with why it was reworked."""
    return {
        "iteration": item.iteration,
        "text": text,
        "scores": dict(item.scores),
        "reasons": list(item.feedback),
    }


# --- the summary writer (first pass and refinement) ---------------------------------------

WRITE_FAILED = "writing the summary failed"


async def write_draft(
    ctx: RunContext,
    goal: ResolvedGoal,
    persona: PersonaProfile,
    notes: list[SummaryNote],
    *,
    previous: SummaryDraft | None,
    iteration: int,
) -> SummaryDraft:
    """Write the summary from the notes, or rewrite it fixing the previous version's problems.

    When writing fails, the previous version is kept (failing, with the error as a reason).
    """
    messages = goal_messages(
        ctx,
        goal,
        persona,
        "reduce",
        notes=notes,
        target_words=int(goal.param("target_words")),
        max_sections=min(8, int(goal.param("max_sections"))),
        previous=previous.markdown() if previous is not None and previous.sections else "",
        feedback=previous.feedback if previous is not None else [],
    )
    attempts = previous.attempts + 1 if previous is not None else 1
    base = previous or SummaryDraft()
    kept = [f for f in base.feedback if not f.startswith(WRITE_FAILED)]
    try:
        out = await ask(ctx, messages, SummaryDraftOut)
    except StructuredOutputError as exc:
        problem, error = f"{WRITE_FAILED}: {exc}", str(exc)
    else:
        sections = [
            SummarySection(heading=s.heading.strip(), text=s.text.strip())
            for s in out.sections
            if s.text.strip()
        ]
        if sections:
            return SummaryDraft(
                status="generated",
                title=out.title.strip(),
                sections=sections,
                attempts=attempts,
                iteration=iteration,
                history=base.history,
            )
        problem, error = f"{WRITE_FAILED}: the summary was empty", "empty summary"
    return base.model_copy(
        update={
            "status": "failing",
            "error": error,
            "feedback": [*kept, problem],
            "attempts": attempts,
            "iteration": iteration,
        }
    )
