"""Routers: pure functions of the state that say where the run goes next."""

from __future__ import annotations

from typing import Literal

from langgraph.runtime import Runtime
from langgraph.types import Send

from personagen.graph.context import RunContext
from personagen.nodes._common import live_questions, new_questions
from personagen.nodes._instrument import default_context_of
from personagen.nodes._review import hook_enabled
from personagen.state.graph import AnswerTask, JudgeTask, SelfTestTask, State

# The hook and review steps are nodes of their own (a hook runs exactly once; a review pauses
# and re-runs only itself). The routers below skip them when nothing is configured at that
# point: a step costs a scheduling round and a checkpoint write even when it does nothing.


def _hooks(state: State, runtime: Runtime[RunContext], point: str) -> bool:
    context = runtime.context
    if context is None:  # a graph invoked without a context: the run's default one
        context = default_context_of(state)
    return bool(context.hooks.get(point))


def after_persona(
    state: State, runtime: Runtime[RunContext]
) -> Literal["hooks_after_persona", "review_persona", "resolve_goal"]:
    """To the `after_persona` hooks, the persona review, or on to the goal."""
    if _hooks(state, runtime, "after_persona"):
        return "hooks_after_persona"
    return to_persona_review(state)


def to_persona_review(state: State) -> Literal["review_persona", "resolve_goal"]:
    """To the persona review when it is on, else on to the goal."""
    return "review_persona" if hook_enabled(state, "persona") else "resolve_goal"


def after_questions(
    state: State, runtime: Runtime[RunContext]
) -> list[Send] | Literal["hooks_after_questions", "review_questions", "collect_answers"]:
    """To the `after_questions` hooks, the questions review, or straight to answering."""
    if _hooks(state, runtime, "after_questions"):
        return "hooks_after_questions"
    return to_questions_review(state)


def to_questions_review(
    state: State,
) -> list[Send] | Literal["review_questions", "collect_answers"]:
    """To the questions review when it is on, else to answering."""
    return "review_questions" if hook_enabled(state, "questions") else dispatch_answers(state)


def after_refine(
    state: State, runtime: Runtime[RunContext]
) -> list[Send] | Literal["hooks_after_questions", "review_questions", "collect_answers"]:
    """After `refine`: new questions to their hooks and review, the rest to answering.

    Replacement questions go through the `after_questions` hooks and the questions review
    like the first ones did; re-answered questions go straight to answering.
    """
    if new_questions(state["pairs"].values(), state["iteration"]):
        return after_questions(state, runtime)
    return dispatch_answers(state)


def after_answers(
    state: State, runtime: Runtime[RunContext]
) -> list[Send] | Literal["hooks_after_answers", "check_constraints"]:
    """To the `after_answers` hooks, or straight to judging."""
    if _hooks(state, runtime, "after_answers"):
        return "hooks_after_answers"
    return dispatch_evaluations(state)


def after_checks(
    state: State, runtime: Runtime[RunContext]
) -> Literal[
    "hooks_after_evaluation",
    "review_answers",
    "refine",
    "hooks_before_output",
    "review_output",
    "optimize_rag",
]:
    """To the `after_evaluation` hooks, the answers review, or the loop's decision."""
    if _hooks(state, runtime, "after_evaluation"):
        return "hooks_after_evaluation"
    return to_answers_review(state, runtime)


def to_answers_review(
    state: State, runtime: Runtime[RunContext]
) -> Literal["review_answers", "refine", "hooks_before_output", "review_output", "optimize_rag"]:
    """To the answers review when it is on, else the loop's decision."""
    if hook_enabled(state, "answers"):
        return "review_answers"
    return decide_next(state, runtime)


def decide_next(
    state: State, runtime: Runtime[RunContext]
) -> Literal["refine", "hooks_before_output", "review_output", "optimize_rag"]:
    """`decide`, then past the output hooks and review when none is configured."""
    if decide(state) == "refine":
        return "refine"
    return before_output(state, runtime)


def before_output(
    state: State, runtime: Runtime[RunContext]
) -> Literal["hooks_before_output", "review_output", "optimize_rag"]:
    """To the `before_output` hooks, the output review, or on to the RAG sweep."""
    if _hooks(state, runtime, "before_output"):
        return "hooks_before_output"
    return to_output_review(state)


def to_output_review(state: State) -> Literal["review_output", "optimize_rag"]:
    """To the output review when it is on, else on to the RAG sweep."""
    return "review_output" if hook_enabled(state, "output") else "optimize_rag"


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
                spec=state["spec"],
            ),
        )
        for pair in state["pairs"].values()
        if pair.status == "pending"
    ]
    return sends or "collect_answers"


def dispatch_evaluations(state: State) -> list[Send] | Literal["check_constraints"]:
    """One `evaluate` task per freshly answered pair, and the judges' self-test once.

    The self-test runs beside the first pass's judging (same step, no extra wall time);
    `check_constraints` waits for both.
    """
    questions = live_questions(state["pairs"].values())
    sends = [
        Send(
            "evaluate",
            JudgeTask(
                pair=pair,
                persona=state["persona"],
                goal=state["goal"],
                spec=state["spec"],
                iteration=state["iteration"],
                questions=questions,
                selftest=state.get("judge_selftest"),
            ),
        )
        for pair in state["pairs"].values()
        if pair.status == "answered"
    ]
    if sends and state.get("judge_selftest") is None and state["goal"].param("selftest"):
        sends.append(
            Send(
                "selftest_judges",
                SelfTestTask(
                    # Only what probes are made of (question and seed excerpt): the task's
                    # payload is checkpointed, and contexts carry whole chunks.
                    pairs=[
                        p.model_copy(update={"contexts": [], "spans": []})
                        for p in state["pairs"].values()
                        if p.origin == "generated" and p.seed_doc_id is not None
                    ],
                    persona=state["persona"],
                    goal=state["goal"],
                    doc_ids=[d.id for d in state["documents"]],
                    spec=state["spec"],
                ),
            )
        )
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
