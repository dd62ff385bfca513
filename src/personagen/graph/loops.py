"""The summary and rewrite tuning loops, added to a graph builder, and the goal router.

    load_data -> route_goal: generate_questions (qa) | summarize (summary) | plan_rewrites

    summary:  summarize -> judge_summary -> decide_summary: refine_summary -> judge_summary
                                                          | <exit>
    rewrite:  plan_rewrites -> rewrite (one task per unit) -> judge_rewrites
                -> decide_rewrites: refine_rewrites -> rewrite ... | <exit>

Both loops leave through `exit_to` (by default `review_output`). Their nodes write the state
keys of `personagen.state.outputs.GoalLoopState` plus `reports`, `events` and `iteration`.
"""

from __future__ import annotations

from typing import Any, Literal

from langgraph.graph import StateGraph
from langgraph.types import RetryPolicy, Send

from personagen.llm.client import is_transient
from personagen.nodes._goal_common import LoopState, loop_ends
from personagen.nodes.judge_rewrites import judge_rewrites
from personagen.nodes.judge_summary import judge_summary
from personagen.nodes.plan_rewrites import plan_rewrites
from personagen.nodes.refine_rewrites import refine_rewrites
from personagen.nodes.refine_summary import refine_summary
from personagen.nodes.rewrite import rewrite
from personagen.nodes.summarize import summarize
from personagen.state.outputs import RewriteTask

SUMMARY_ENTRY = "summarize"
"""The node the summary loop starts at."""
REWRITE_ENTRY = "plan_rewrites"
"""The node the rewrite loop starts at."""

# Same policy as the Q/A nodes: the client retries each call; this retries a whole task
# when a call still failed transiently.
LLM_RETRY = RetryPolicy(max_attempts=2, initial_interval=2.0, retry_on=is_transient)


def route_goal(state: LoopState) -> Literal["generate_questions", "summarize", "plan_rewrites"]:
    """Where the run goes after `load_data`: the goal's loop."""
    loop = state["goal"].loop
    if loop == "qa":
        return "generate_questions"
    if loop == "summary":
        return "summarize"
    if loop == "rewrite":
        return "plan_rewrites"
    raise ValueError(f"goal {state['goal'].name!r} has an unknown loop {loop!r}")


def _leave(state: LoopState) -> bool:
    reports = state.get("reports") or []
    if not reports:
        raise ValueError("a goal loop was asked where to go before any pass was scored")
    return loop_ends(reports[-1], state["iteration"], state["spec"].run.max_iterations)


def decide_summary(state: LoopState) -> Literal["refine_summary", "exit"]:
    """Leave when the summary meets the baseline, cannot be refined, or iterations run out."""
    return "exit" if _leave(state) else "refine_summary"


def decide_rewrites(state: LoopState) -> Literal["refine_rewrites", "exit"]:
    """Leave when every unit meets the baseline, none is failing, or iterations run out."""
    return "exit" if _leave(state) else "refine_rewrites"


def dispatch_rewrites(state: LoopState) -> list[Send] | Literal["judge_rewrites"]:
    """One `rewrite` task per unit that needs a rewrite; straight to judging if none does."""
    sends = [
        Send(
            "rewrite",
            RewriteTask(
                item=item,
                persona=state["persona"],
                goal=state["goal"],
                iteration=state["iteration"],
                spec=state["spec"],
            ),
        )
        for item in state.get("rewrites", {}).values()
        if item.status == "pending"
    ]
    return sends or "judge_rewrites"


def add_summary_loop(
    builder: StateGraph[Any, Any, Any, Any], *, exit_to: str = "review_output"
) -> None:
    """Add the summary loop's nodes and edges; it starts at `summarize`, leaves to `exit_to`."""
    builder.add_node("summarize", summarize, retry_policy=LLM_RETRY)
    builder.add_node("judge_summary", judge_summary, retry_policy=LLM_RETRY)
    builder.add_node("refine_summary", refine_summary, retry_policy=LLM_RETRY)
    builder.add_edge("summarize", "judge_summary")
    builder.add_conditional_edges(
        "judge_summary", decide_summary, {"refine_summary": "refine_summary", "exit": exit_to}
    )
    builder.add_edge("refine_summary", "judge_summary")


def add_rewrite_loop(
    builder: StateGraph[Any, Any, Any, Any], *, exit_to: str = "review_output"
) -> None:
    """Add the rewrite loop's nodes and edges; it starts at `plan_rewrites`, leaves to `exit_to`."""
    builder.add_node("plan_rewrites", plan_rewrites)
    builder.add_node("rewrite", rewrite, retry_policy=LLM_RETRY)
    builder.add_node("judge_rewrites", judge_rewrites, retry_policy=LLM_RETRY)
    builder.add_node("refine_rewrites", refine_rewrites)
    builder.add_conditional_edges("plan_rewrites", dispatch_rewrites, ["rewrite", "judge_rewrites"])
    builder.add_edge("rewrite", "judge_rewrites")
    builder.add_conditional_edges(
        "judge_rewrites", decide_rewrites, {"refine_rewrites": "refine_rewrites", "exit": exit_to}
    )
    builder.add_conditional_edges(
        "refine_rewrites", dispatch_rewrites, ["rewrite", "judge_rewrites"]
    )
