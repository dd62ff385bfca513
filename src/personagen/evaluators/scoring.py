"""Scoring a tuning-loop pass: means over judged pairs, shortfalls, the baseline verdict."""

from __future__ import annotations

from collections import Counter
from statistics import fmean

from personagen.state.items import QAPair
from personagen.state.metadata import IterationReport


def iteration_report(
    pairs: dict[str, QAPair],
    goal_baseline: dict[str, float],
    iteration: int,
    min_accepted: int | None,
) -> IterationReport:
    """Scores and counts of the pass: means over judged answerable pairs, baseline verdict."""
    judged = [
        p
        for p in pairs.values()
        if p.answerable and p.status in ("accepted", "unverified", "failing")
    ]
    metrics = sorted({m for p in judged for m in p.scores})
    scores = {m: round(fmean(p.scores[m] for p in judged if m in p.scores), 4) for m in metrics}
    statuses = Counter(p.status for p in pairs.values())
    accepted, failing = statuses["accepted"], statuses["failing"]
    shortfalls: list[str] = []
    for metric, minimum in goal_baseline.items():
        below = [p for p in judged if p.scores.get(metric, -1.0) < minimum]
        if below:
            shortfalls.append(
                f"{metric}: {len(below)} pair(s) below {minimum:.2f} "
                f"(mean {scores.get(metric, 0):.2f})"
            )
    rules = Counter(v.rule for p in pairs.values() if p.status == "failing" for v in p.violations)
    shortfalls.extend(f"constraint {rule}: {n} violation(s)" for rule, n in rules.most_common())
    unanswered = sum(1 for p in pairs.values() if p.status == "failing" and not p.answerable)
    if unanswered:
        shortfalls.append(f"{unanswered} generated question(s) not answerable from the data")
    # Unverified pairs passed every trusted gate: reworking them cannot change what an
    # untrusted judge says, so they count towards leaving the loop (never as accepted).
    done = accepted + statuses["unverified"]
    needed = min_accepted if min_accepted is not None else done + failing
    met = done >= max(1, needed) and (min_accepted is not None or failing == 0)
    return IterationReport(
        iteration=iteration,
        scores=scores,
        accepted=accepted,
        unverified=statuses["unverified"],
        failing=failing,
        unanswerable=statuses["unanswerable"],
        baseline_met=met,
        shortfalls=shortfalls,
    )
