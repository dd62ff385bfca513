"""The PersonaGen state machine. `build_graph()` returns the uncompiled builder.

    compose_persona -> review_persona? -> resolve_goal -> load_data -> generate_questions
      -> review_questions? -> answer (one task per question) -> collect_answers
      -> evaluate (one task per answer) + selftest_judges (once) -> check_constraints
      -> review_answers?
      -> decide: refine -> answer ... | review_output? -> optimize_rag -> compose_output

Nodes marked ? pause (LangGraph `interrupt`) only when the spec names their hook.

Compile it with the checkpointer of your choice (`personagen.graph.checkpoint` has the
defaults), or use `personagen.run` which does that for you.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import RetryPolicy

from personagen.graph.context import RunContext
from personagen.graph.loops import add_rewrite_loop, add_summary_loop, route_goal
from personagen.graph.routing import (
    after_answers,
    after_checks,
    after_persona,
    after_questions,
    after_refine,
    decide_next,
    dispatch_answers,
    dispatch_evaluations,
    to_answers_review,
    to_output_review,
    to_persona_review,
    to_questions_review,
)
from personagen.llm.client import is_transient
from personagen.nodes.answer import answer
from personagen.nodes.check_constraints import check_constraints
from personagen.nodes.collect_answers import collect_answers
from personagen.nodes.compose_output import compose_output
from personagen.nodes.compose_persona import compose_persona
from personagen.nodes.evaluate import evaluate
from personagen.nodes.generate_questions import generate_questions
from personagen.nodes.load_data import load_data
from personagen.nodes.optimize_rag import optimize_rag
from personagen.nodes.refine import refine
from personagen.nodes.resolve_goal import resolve_goal
from personagen.nodes.review_answers import review_answers
from personagen.nodes.review_output import review_output
from personagen.nodes.review_persona import review_persona
from personagen.nodes.review_questions import review_questions
from personagen.nodes.run_hooks import (
    hooks_after_answers,
    hooks_after_evaluation,
    hooks_after_persona,
    hooks_after_questions,
    hooks_before_output,
)
from personagen.nodes.selftest_judges import selftest_judges
from personagen.state.graph import InputState, OutputState, State

# The client retries each call; this retries a whole task when a call still failed transiently.
LLM_RETRY = RetryPolicy(max_attempts=2, initial_interval=2.0, retry_on=is_transient)


@cache
def _compiled() -> CompiledStateGraph[State, RunContext, InputState, OutputState]:
    return build_graph().compile(name="personagen")


def compile_graph(
    checkpointer: BaseCheckpointSaver[Any] | None = None,
) -> CompiledStateGraph[State, RunContext, InputState, OutputState]:
    """The compiled graph with `checkpointer`.

    Compiling inspects every node (~30 ms); it is done once per process and each run gets a
    copy bound to its checkpointer (runs share no mutable state: LangGraph builds a run's
    channels from the checkpoint).
    A checkpointer with LangGraph's stock serializer gets `serializer()`, which registers
    every state type (no "Deserializing unregistered type" warnings).
    """
    from personagen.graph.checkpoint import with_state_types

    if checkpointer is not None:
        checkpointer = with_state_types(checkpointer)
    return _compiled().copy(update={"checkpointer": checkpointer})


def build_graph() -> StateGraph[State, RunContext, InputState, OutputState]:
    """The uncompiled Q/A graph (input: `InputState`, output: `OutputState`)."""
    builder = StateGraph(
        State, context_schema=RunContext, input_schema=InputState, output_schema=OutputState
    )
    builder.add_node("compose_persona", compose_persona, retry_policy=LLM_RETRY)
    builder.add_node("resolve_goal", resolve_goal)
    builder.add_node("load_data", load_data)
    builder.add_node("generate_questions", generate_questions, retry_policy=LLM_RETRY)
    builder.add_node("answer", answer, retry_policy=LLM_RETRY)
    builder.add_node("collect_answers", collect_answers)
    builder.add_node("evaluate", evaluate, retry_policy=LLM_RETRY)
    builder.add_node("selftest_judges", selftest_judges, retry_policy=LLM_RETRY)
    builder.add_node("check_constraints", check_constraints, retry_policy=LLM_RETRY)
    builder.add_node("refine", refine, retry_policy=LLM_RETRY)
    builder.add_node("compose_output", compose_output)
    builder.add_node("review_persona", review_persona)
    builder.add_node("review_questions", review_questions, retry_policy=LLM_RETRY)
    builder.add_node("review_answers", review_answers)
    builder.add_node("review_output", review_output)
    builder.add_node("optimize_rag", optimize_rag)
    builder.add_node("hooks_after_persona", hooks_after_persona)
    builder.add_node("hooks_after_questions", hooks_after_questions)  # type: ignore[arg-type]
    builder.add_node("hooks_after_answers", hooks_after_answers)  # type: ignore[arg-type]
    builder.add_node("hooks_after_evaluation", hooks_after_evaluation)  # type: ignore[arg-type]
    builder.add_node("hooks_before_output", hooks_before_output)  # type: ignore[arg-type]

    builder.add_edge(START, "compose_persona")
    builder.add_conditional_edges(
        "compose_persona", after_persona, ["hooks_after_persona", "review_persona", "resolve_goal"]
    )
    builder.add_conditional_edges(
        "hooks_after_persona", to_persona_review, ["review_persona", "resolve_goal"]
    )
    builder.add_edge("review_persona", "resolve_goal")
    builder.add_edge("resolve_goal", "load_data")
    builder.add_conditional_edges(
        "load_data", route_goal, ["generate_questions", "summarize", "plan_rewrites"]
    )
    add_summary_loop(builder, exit_to="hooks_before_output")
    add_rewrite_loop(builder, exit_to="hooks_before_output")
    builder.add_conditional_edges(
        "generate_questions",
        after_questions,
        ["hooks_after_questions", "review_questions", "answer", "collect_answers"],
    )
    builder.add_conditional_edges(
        "hooks_after_questions",
        to_questions_review,
        ["review_questions", "answer", "collect_answers"],
    )
    builder.add_conditional_edges(
        "review_questions", dispatch_answers, ["answer", "collect_answers"]
    )
    builder.add_edge("answer", "collect_answers")
    builder.add_conditional_edges(
        "collect_answers",
        after_answers,
        ["hooks_after_answers", "evaluate", "selftest_judges", "check_constraints"],
    )
    builder.add_conditional_edges(
        "hooks_after_answers",
        dispatch_evaluations,
        ["evaluate", "selftest_judges", "check_constraints"],
    )
    builder.add_edge("evaluate", "check_constraints")
    builder.add_edge("selftest_judges", "check_constraints")
    to_output = ["hooks_before_output", "review_output", "optimize_rag"]
    builder.add_conditional_edges(
        "check_constraints",
        after_checks,
        ["hooks_after_evaluation", "review_answers", "refine", *to_output],
    )
    builder.add_conditional_edges(
        "hooks_after_evaluation", to_answers_review, ["review_answers", "refine", *to_output]
    )
    builder.add_conditional_edges("review_answers", decide_next, ["refine", *to_output])
    builder.add_conditional_edges(
        "refine",
        after_refine,
        ["hooks_after_questions", "review_questions", "answer", "collect_answers"],
    )
    builder.add_conditional_edges(
        "hooks_before_output", to_output_review, ["review_output", "optimize_rag"]
    )
    builder.add_edge("review_output", "optimize_rag")
    builder.add_edge("optimize_rag", "compose_output")
    builder.add_edge("compose_output", END)
    return builder
