"""Cost before the run: LLM calls, tokens and time estimated from the spec and the data alone.

No model is called. The estimate gives a range: `low` assumes every pair passes on the first
pass; `high` assumes `refine_rate` of the pairs fail each pass until `max_iterations`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from personagen.errors import SpecError
from personagen.prompts.library import resolve_goal
from personagen.state.spec import RunSpec

# Prompt overheads in tokens, measured on the library prompts and Ragas' prompts.
_TEMPLATE = {
    "generate": 260,
    "answer": 230,
    "faith_statements": 650,
    "faith_nli": 1100,
    "relevancy": 450,
    "precision": 700,
    "persona_fit": 300,
    "topic": 120,
    "replace": 300,
    "persona": 150,
}
_OUTPUT = {
    "generate": 30,
    "answer": 120,
    "faith_statements": 90,
    "faith_nli": 160,
    "relevancy": 40,
    "precision": 60,
    "persona_fit": 70,
    "topic": 40,
    "replace": 30,
    "persona": 120,
}
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


def _stage(name: str, calls: int, context_tokens: float = 0.0) -> StageEstimate:
    key = name.split(":")[0]
    return StageEstimate(
        stage=name,
        calls=calls,
        input_tokens=int(calls * (_TEMPLATE[key] + context_tokens)),
        output_tokens=int(calls * _OUTPUT[key]),
    )


def supports(spec: RunSpec) -> bool:
    """Whether `estimate_run` can estimate this spec's goal (the qa loop, so far)."""
    return resolve_goal(spec.goal, base_dir=spec.base_dir).loop == "qa"


def estimate_run(
    spec: RunSpec, *, characters: int, documents: int, refine_rate: float = 0.3
) -> Estimate:
    """Estimate calls, tokens and seconds for `spec` over data of `characters` characters."""
    goal = resolve_goal(spec.goal, base_dir=spec.base_dir)
    if goal.loop != "qa":
        raise SpecError(
            f"estimate: goal {goal.name!r} uses the {goal.loop!r} loop; estimates cover the qa "
            "loop only so far"
        )
    params = goal.params
    persona_tokens = len(spec.persona.model_dump_json()) / 4
    excerpts = max(1, math.ceil(characters / int(params["excerpt_chars"])))
    wanted = int(params["num_questions"])
    pairs = wanted + len(dict.fromkeys(spec.persona.custom_questions))
    top_k = int(params["top_k"])
    context = top_k * min(int(params["chunk_size"]), max(characters, 1)) / 4
    generate_calls = min(excerpts, math.ceil(wanted / int(params["questions_per_excerpt"])))
    topic_rules = sum(
        (2 if rule.applies_to == "both" else 1)
        for _, rule in spec.constraints.rules
        if rule.kind == "topic"
    )

    def judged(n: int) -> list[StageEstimate]:
        out = []
        # Small bundled models answer extractively: faithfulness needs no judge call then.
        extractive = spec.llm.provider == "embedded" and spec.llm.model_path is None
        if "faithfulness" in goal.metrics and not extractive:
            out.append(_stage("faith_statements", n, 40))
            out.append(_stage("faith_nli", n, context))
        if "answer_relevancy" in goal.metrics:
            out.append(_stage("relevancy", n * int(params["answer_relevancy_strictness"]), 40))
        if "context_precision" in goal.metrics:
            out.append(_stage("precision", n * top_k, context / max(top_k, 1)))
        if "persona_fit" in goal.metrics:
            out.append(_stage("persona_fit", n, persona_tokens + 60))
        if topic_rules:
            out.append(_stage("topic", n * topic_rules, 60))
        return out

    first = [
        *([_stage("persona", 1, 40)] if spec.persona.is_bare else []),
        _stage("generate", generate_calls, persona_tokens + int(params["excerpt_chars"]) / 4),
        _stage("answer", pairs, persona_tokens + context),
        *judged(pairs),
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
    prompt_speed, output_speed, latency = _SPEED[spec.llm.provider]
    concurrency = 1 if spec.llm.provider == "embedded" else spec.run.max_concurrency

    def totals(stages: list[StageEstimate]) -> dict[str, float]:
        calls = sum(s.calls for s in stages)
        tokens_in = sum(s.input_tokens for s in stages)
        tokens_out = sum(s.output_tokens for s in stages)
        seconds = tokens_in / prompt_speed + tokens_out / output_speed + calls * latency
        return {
            "calls": calls,
            "input_tokens": tokens_in,
            "output_tokens": tokens_out,
            "total_tokens": tokens_in + tokens_out,
            "seconds": round(seconds / concurrency, 1),
        }

    return Estimate(
        documents=documents,
        characters=characters,
        pairs=pairs,
        first_pass=first,
        low=totals(first),
        high=totals(first + later),
        assumptions=[
            f"{pairs} pairs ({wanted} generated + custom), top_k {top_k}",
            f"high: {refine_rate:.0%} of pairs fail each pass, {spec.run.max_iterations} pass(es)",
            f"speed ({spec.llm.provider}): {prompt_speed:.0f} prompt tok/s, "
            f"{output_speed:.0f} output tok/s, {latency}s per call, concurrency {concurrency}",
        ],
    )
