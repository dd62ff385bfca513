"""Recommendations to improve a run's inputs, each with the evidence behind it."""

from __future__ import annotations

from collections import Counter
from typing import Any

from personagen.state.items import PersonaProfile, QAPair
from personagen.state.metadata import IterationReport


def recommend(
    *,
    persona: PersonaProfile,
    pairs: list[QAPair],
    reports: list[IterationReport],
    baseline: dict[str, float],
    max_iterations: int,
    model_name: str,
) -> list[dict[str, Any]]:
    """Derive recommendations from what the run saw; each names its evidence."""
    out: list[dict[str, Any]] = []
    unanswerable = [p for p in pairs if p.status == "unanswerable" or p.answerable is False]
    if unanswerable:
        out.append(
            {
                "kind": "add_data",
                "message": f"{len(unanswerable)} question(s) could not be answered from the data: "
                "add documents covering them, or drop them from custom_questions",
                "evidence": [p.question for p in unanswerable][:20],
            }
        )
    missing = [
        name
        for name, value in (
            ("role", persona.role),
            ("expertise", persona.expertise),
            ("goals", persona.goals),
            ("pain_points", persona.pain_points),
        )
        if not value
    ]
    if persona.composed_by == "llm" or len(missing) >= 2:
        out.append(
            {
                "kind": "persona_detail",
                "message": "the persona is vague; add "
                + ", ".join(missing or ["goals", "pain_points"])
                + " so questions and answers can be tailored",
                "evidence": [
                    f"composed_by={persona.composed_by}",
                    f"missing: {', '.join(missing)}",
                ],
            }
        )
    rejected = [p for p in pairs if p.status == "rejected"]
    rules = Counter(v.rule for p in rejected for v in p.violations)
    for rule, count in rules.most_common():
        if rejected and count / len(pairs) >= 0.3:
            out.append(
                {
                    "kind": "constraint",
                    "message": f"constraint {rule!r} rejected {count} of {len(pairs)} items: "
                    "check that it says what you mean, or relax it",
                    "evidence": [
                        p.id for p in rejected if any(v.rule == rule for v in p.violations)
                    ][:20],
                }
            )
    if reports and not reports[-1].baseline_met:
        out.append(
            {
                "kind": "baseline",
                "message": f"the baseline was not reached in {len(reports)} of {max_iterations} "
                f"iteration(s) with {model_name}: use a stronger model, raise "
                "run.max_iterations, or lower the baseline",
                "evidence": reports[-1].shortfalls + [f"baseline: {baseline}"],
            }
        )
    return out
