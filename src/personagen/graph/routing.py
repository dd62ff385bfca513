"""Routers: pure functions of the state that say where the run goes next."""

from __future__ import annotations

from typing import Literal

from langgraph.types import Send

from personagen.state.graph import AnswerTask, JudgeTask, State


def dispatch_answers(state: State) -> list[Send] | Literal["collect_answers"]:
    """One `answer` task per pair that needs an answer; straight on if there is none."""
    doc_ids = [d.id for d in state["documents"]]
    sends = [
        Send(
            "answer",
            AnswerTask(
                pair=pair,
                persona=state["persona"],
                goal=state["goal"],
                doc_ids=doc_ids,
                iteration=state["iteration"],
            ),
        )
        for pair in state["pairs"].values()
        if pair.status == "pending"
    ]
    return sends or "collect_answers"


def dispatch_evaluations(state: State) -> list[Send] | Literal["check_constraints"]:
    """One `evaluate` task per freshly answered pair."""
    sends = [
        Send(
            "evaluate",
            JudgeTask(
                pair=pair,
                persona=state["persona"],
                goal=state["goal"],
                spec=state["spec"],
                iteration=state["iteration"],
            ),
        )
        for pair in state["pairs"].values()
        if pair.status == "answered"
    ]
    return sends or "check_constraints"


def decide(state: State) -> Literal["refine", "hooks_before_output"]:
    """Leave the loop when the baseline is met or iterations run out; otherwise refine."""
    reports = state.get("reports") or []
    if not reports:
        raise ValueError("decide reached before any pass was scored")
    if reports[-1].baseline_met:
        return "hooks_before_output"
    if state["iteration"] >= state["spec"].run.max_iterations:
        return "hooks_before_output"
    return "refine"
