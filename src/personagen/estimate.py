"""Cost before the run: LLM calls, tokens and time estimated from the spec and the data alone.

No model is called. The estimate gives a range: `low` assumes every item passes on the first
pass; `high` assumes `refine_rate` of the items (Q/A pairs, rewritten units; the summary
itself) fail each pass until `max_iterations`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from personagen.data.chunking import Splitter
from personagen.llm.factory import judge_is_small
from personagen.prompts.library import resolve_goal
from personagen.state.goal import ResolvedGoal
from personagen.state.spec import RunSpec

# Prompt overheads in tokens, measured on the library prompts and Ragas' prompts.
_TEMPLATE = {
    "generate": 260,
    "answer": 230,
    "faith_statements": 650,
    "faith_nli": 1100,
    "relevancy": 450,
    "precision": 200,  # one compact call with every context (evaluators/compact.py)
    "selftest": 600,  # a probe's judge prompt (mostly Ragas' instructions and examples)
    "persona_fit": 300,
    "topic": 120,
    "replace": 300,
    "persona": 150,
    "map": 330,
    "combine": 260,
    "write": 320,
    "claims": 380,
    "coverage": 280,
    "summary_fit": 260,
    "rewrite": 330,
    "criteria": 420,
}
_OUTPUT = {
    "generate": 30,
    "answer": 120,
    "faith_statements": 90,
    "faith_nli": 160,
    "relevancy": 40,
    "precision": 120,
    "selftest": 70,
    "persona_fit": 70,
    "topic": 40,
    "replace": 30,
    "persona": 120,
    "map": 200,
    "combine": 260,
    "write": 300,
    "claims": 150,
    "coverage": 60,
    "summary_fit": 80,
    "rewrite": 300,
    "criteria": 120,
}
# Notes a map call yields, as a share of `max_notes` (small models take fewer).
_NOTES_SHARE = 0.6
# Throughput assumptions (tokens/s) and per-call latency (s) by provider.
_SPEED = {"embedded": (150.0, 35.0, 0.2), "openai": (3000.0, 60.0, 0.8), "fake": (1e9, 1e9, 0.0)}


@dataclass
class StageEstimate:
    """Calls and tokens of one stage in one pass."""

    stage: str
    calls: int
    input_tokens: int
    output_tokens: int


@dataclass
class Estimate:
    """The estimate of a run's cost."""

    documents: int
    characters: int
    pairs: int
    first_pass: list[StageEstimate] = field(default_factory=list)
    low: dict[str, float] = field(default_factory=dict)
    high: dict[str, float] = field(default_factory=dict)
    assumptions: list[str] = field(default_factory=list)


def _stage(
    name: str, calls: int, context_tokens: float = 0.0, output_tokens: float | None = None
) -> StageEstimate:
    key = name.split(":")[0]
    return StageEstimate(
        stage=name,
        calls=calls,
        input_tokens=int(calls * (_TEMPLATE[key] + context_tokens)),
        output_tokens=int(calls * (_OUTPUT[key] if output_tokens is None else output_tokens)),
    )


def _pieces(
    texts: Sequence[str] | None, characters: int, documents: int, size: int, splitter: Splitter
) -> int:
    """How many chunks of `size` the data makes (exact when the texts are given)."""
    if texts is None:
        return max(documents, math.ceil(characters / size), 1)
    from personagen.data.chunking import chunk_text

    return max(
        1,
        sum(
            len(chunk_text(str(i), t, chunk_size=size, chunk_overlap=0, splitter=splitter))
            for i, t in enumerate(texts)
            if t.strip()
        ),
    )


def estimate_run(
    spec: RunSpec,
    *,
    characters: int,
    documents: int,
    refine_rate: float = 0.3,
    texts: Sequence[str] | None = None,
) -> Estimate:
    """Estimate calls, tokens and seconds for `spec` over data of `characters` characters.

    Args:
        spec: the run spec.
        characters: characters of text in the data.
        documents: documents in the data.
        refine_rate: the share of items failing each pass in the `high` estimate.
        texts: the documents' texts, when at hand: sections and excerpts are then counted,
            not guessed from the length.
    """
    goal = resolve_goal(spec.goal, base_dir=spec.base_dir, small_judge=judge_is_small(spec.llm))
    if goal.loop == "summary":
        first, later, items, notes = _summary(spec, goal, characters, documents, texts)
    elif goal.loop == "rewrite":
        first, later, items, notes = _rewrite(spec, goal, characters, documents, texts, refine_rate)
    else:
        first, later, items, notes = _qa(spec, goal, characters, refine_rate)
    passes = spec.run.max_iterations
    high = (
        f"high: the summary is rewritten and judged again in each of {passes} pass(es)"
        if goal.loop == "summary"
        else f"high: {refine_rate:.0%} of items fail each pass, {passes} pass(es)"
    )
    return _totals(spec, documents, characters, items, first, later, [*notes, high])


def _topic_checks(spec: RunSpec) -> int:
    return sum(
        (2 if rule.applies_to == "both" else 1)
        for _, rule in spec.constraints.rules
        if rule.kind == "topic"
    )


def _qa(
    spec: RunSpec, goal: ResolvedGoal, characters: int, refine_rate: float
) -> tuple[list[StageEstimate], list[StageEstimate], int, list[str]]:
    params = goal.params
    persona_tokens = len(spec.persona.model_dump_json()) / 4
    excerpts = max(1, math.ceil(characters / int(params["excerpt_chars"])))
    wanted = int(params["num_questions"])
    pairs = wanted + len(dict.fromkeys(spec.persona.custom_questions))
    top_k = int(params["top_k"])
    context = top_k * min(int(params["chunk_size"]), max(characters, 1)) / 4
    generate_calls = min(excerpts, math.ceil(wanted / int(params["questions_per_excerpt"])))
    topic_rules = _topic_checks(spec)

    def judged(n: int) -> list[StageEstimate]:
        out = []
        # Small bundled models answer extractively: faithfulness needs no judge call then.
        extractive = spec.llm.provider == "embedded" and spec.llm.model_path is None
        if "faithfulness" in goal.metrics and not extractive:
            out.append(_stage("faith_nli", n, context))  # the answer's sentences, one call
        if "answer_relevancy" in goal.metrics:
            out.append(_stage("relevancy", n * int(params["answer_relevancy_strictness"]), 40))
        if "context_precision" in goal.metrics:
            out.append(_stage("precision", n, context))  # every context in one call
        if "persona_fit" in goal.metrics:
            out.append(_stage("persona_fit", n, persona_tokens + 60))
        if topic_rules:
            out.append(_stage("topic", n * topic_rules, 60))
        return out

    # The judges' self-test: each probe judged right and wrong by every model-judged
    # metric, on one short passage (a right answer is verbatim: no faithfulness call).
    model_judged = [m for m in goal.metrics if m not in ("grounding", "relevance")]
    probe_calls = 2 * len(model_judged) - ("faithfulness" in model_judged)
    selftest = (
        [_stage("selftest", int(params["selftest_probes"]) * probe_calls, 150 + persona_tokens)]
        if params.get("selftest") and model_judged
        else []
    )
    first = [
        *([_stage("persona", 1, 40)] if spec.persona.is_bare else []),
        _stage("generate", generate_calls, persona_tokens + int(params["excerpt_chars"]) / 4),
        _stage("answer", pairs, persona_tokens + context),
        *judged(pairs),
        *selftest,
    ]
    later: list[StageEstimate] = []
    failing = float(pairs)
    for _ in range(1, spec.run.max_iterations):
        failing *= refine_rate
        n = math.ceil(failing)
        if n == 0:
            break
        later += [
            _stage("replace", math.ceil(n / 2), persona_tokens + int(params["excerpt_chars"]) / 4),
            _stage("answer", n, persona_tokens + context),
            *judged(n),
        ]
    return first, later, pairs, [f"{pairs} pairs ({wanted} generated + custom), top_k {top_k}"]


def _summary(
    spec: RunSpec,
    goal: ResolvedGoal,
    characters: int,
    documents: int,
    texts: Sequence[str] | None,
) -> tuple[list[StageEstimate], list[StageEstimate], int, list[str]]:
    params = goal.params
    persona_tokens = len(spec.persona.model_dump_json()) / 4
    map_chars = int(params["map_chars"])
    excerpts = _pieces(texts, characters, documents, map_chars, "recursive")
    per_excerpt = min(8, int(params["max_notes"]))
    notes = max(1, round(excerpts * per_excerpt * _NOTES_SHARE))
    reduce_max = max(2, int(params["reduce_max_notes"]))
    combines = 0
    while notes > reduce_max:
        calls = math.ceil(notes / reduce_max)
        combines += calls
        if calls * 8 >= notes:
            break
        notes = calls * 8
    summary_chars = int(params["target_words"]) * 6
    used_notes = min(notes, reduce_max)
    persona = spec.persona
    given = [*persona.goals, *persona.pain_points, *persona.interests]
    # A bare description is composed by the model, with a few goals and worries.
    needs = len(dict.fromkeys(given)) or (4 if persona.is_bare else 1)

    def judged() -> list[StageEstimate]:
        out = []
        if "faithfulness" in goal.metrics:
            claims_calls = max(1, math.ceil(summary_chars / int(params["claims_chars"])))
            evidence = int(params["evidence_notes"]) * 60
            out.append(_stage("claims", claims_calls, evidence + int(params["claims_chars"]) / 4))
        if "coverage" in goal.metrics:
            out.append(_stage("coverage", needs, summary_chars / 4 + used_notes * 15))
        if "persona_fit" in goal.metrics:
            out.append(_stage("summary_fit", 1, persona_tokens + summary_chars / 4))
        if _topic_checks(spec):
            out.append(_stage("topic", _topic_checks(spec), summary_chars / 4))
        return out

    write = _stage(
        "write", 1, persona_tokens + used_notes * 40, output_tokens=summary_chars / 4 + 60
    )
    first = [
        *([_stage("persona", 1, 40)] if spec.persona.is_bare else []),
        _stage("map", excerpts, persona_tokens + map_chars / 4, output_tokens=per_excerpt * 35),
        *([_stage("combine", combines, reduce_max * 40)] if combines else []),
        write,
        *judged(),
    ]
    later: list[StageEstimate] = []
    for _ in range(1, spec.run.max_iterations):  # the summary is one item: it is redone whole
        later += [write, *judged()]
    return (
        first,
        later,
        1,
        [
            f"summary: {excerpts} excerpt(s) of {map_chars} chars, ~{notes} notes, "
            f"{needs} need(s) judged for coverage"
        ],
    )


def _rewrite(
    spec: RunSpec,
    goal: ResolvedGoal,
    characters: int,
    documents: int,
    texts: Sequence[str] | None,
    refine_rate: float,
) -> tuple[list[StageEstimate], list[StageEstimate], int, list[str]]:
    params = goal.params
    persona_tokens = len(spec.persona.model_dump_json()) / 4
    size = int(params["unit_chars"])
    splitter: Splitter = "markdown" if params["unit"] == "section" else "recursive"
    units = _pieces(texts, characters, documents, size, splitter)
    if params.get("max_units") is not None:
        units = min(units, int(params["max_units"]))
    unit_chars = min(size, max(characters, 1) / units)
    criteria = len(params.get("criteria") or [])

    def passes(n: int) -> list[StageEstimate]:
        out = [
            _stage("rewrite", n, persona_tokens + unit_chars / 4, output_tokens=unit_chars / 4),
        ]
        if "faithfulness" in goal.metrics:
            claims = max(1, math.ceil(unit_chars / int(params["claims_chars"])))
            out.append(_stage("claims", n * claims, unit_chars / 4 * 2))
        if goal.metrics and {"criteria", "persona_fit"} & set(goal.metrics):
            out.append(_stage("criteria", n, persona_tokens + unit_chars / 2 + criteria * 25))
        if _topic_checks(spec):
            out.append(_stage("topic", n * _topic_checks(spec), unit_chars / 4))
        return out

    first = [*([_stage("persona", 1, 40)] if spec.persona.is_bare else []), *passes(units)]
    later: list[StageEstimate] = []
    failing = float(units)
    for _ in range(1, spec.run.max_iterations):
        failing *= refine_rate
        n = math.ceil(failing)
        if n == 0:
            break
        later += passes(n)
    return first, later, units, [f"rewrite: {units} unit(s) ({params['unit']}, <= {size} chars)"]


def _totals(
    spec: RunSpec,
    documents: int,
    characters: int,
    items: int,
    first: list[StageEstimate],
    later: list[StageEstimate],
    notes: list[str],
) -> Estimate:
    from personagen.llm.pricing import price_for

    prompt_speed, output_speed, latency = _SPEED[spec.llm.provider]
    concurrency = 1 if spec.llm.provider == "embedded" else spec.run.max_concurrency
    price = price_for(spec.llm)

    def totals(stages: list[StageEstimate]) -> dict[str, float]:
        calls = sum(s.calls for s in stages)
        tokens_in = sum(s.input_tokens for s in stages)
        tokens_out = sum(s.output_tokens for s in stages)
        seconds = tokens_in / prompt_speed + tokens_out / output_speed + calls * latency
        out = {
            "calls": calls,
            "input_tokens": tokens_in,
            "output_tokens": tokens_out,
            "total_tokens": tokens_in + tokens_out,
            "seconds": round(seconds / concurrency, 1),
        }
        if price is not None:  # USD; no key when the model's price is unknown
            out["cost_usd"] = round(price.cost(tokens_in, tokens_out), 6)
        return out

    return Estimate(
        documents=documents,
        characters=characters,
        pairs=items,
        first_pass=first,
        low=totals(first),
        high=totals(first + later),
        assumptions=[
            *notes,
            f"speed ({spec.llm.provider}): {prompt_speed:.0f} prompt tok/s, "
            f"{output_speed:.0f} output tok/s, {latency}s per call, concurrency {concurrency}",
            "price: "
            + (
                "unknown (set llm.price)"
                if price is None
                else "local ($0)"
                if price.local
                else f"${price.input}/${price.output} per 1M in/out tokens ({price.source})"
            ),
        ],
    )
