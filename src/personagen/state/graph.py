"""The LangGraph state: input, internal and output schemas, with explicit reducers.

The state holds references and small values; document text sits in the chunk store keyed by
content hash, so checkpoints stay small.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, Literal, NotRequired, TypedDict

from personagen.state.documents import DocumentRef
from personagen.state.goal import ResolvedGoal
from personagen.state.hooks import HookChange
from personagen.state.items import PersonaProfile, QAPair
from personagen.state.metadata import Event, IterationReport, JudgeSelfTest, LLMCall, StageRun
from personagen.state.outputs import RewriteItem, SummaryDraft, SummaryNote, merge_rewrites
from personagen.state.spec import RunSpec

RunStatus = Literal["running", "done", "failed", "budget_exhausted", "stopped"]


def merge_pairs(
    left: dict[str, QAPair] | None, right: dict[str, QAPair] | None
) -> dict[str, QAPair]:
    """Merge pair updates by id; a later version of a pair replaces the earlier one."""
    merged = dict(left or {})
    merged.update(right or {})
    return merged


class InputState(TypedDict):
    """What a caller passes to start a run."""

    spec: RunSpec
    """The validated run spec."""
    run_id: str
    """The run's id; also the checkpoint thread id."""


class State(InputState, total=False):
    """Everything the graph tracks."""

    started_at: float
    """Unix time the run started."""
    persona: PersonaProfile
    """The composed persona."""
    goal: ResolvedGoal
    """The goal with the user's prompts, params and baseline merged in."""
    documents: list[DocumentRef]
    """Loaded documents (text in the chunk store)."""
    pairs: Annotated[dict[str, QAPair], merge_pairs]
    """Every Q/A pair by id, in every status."""
    removed_duplicates: Annotated[list[dict[str, Any]], operator.add]
    """Questions removed as near-duplicates, with the question they duplicated."""
    removed_questions: Annotated[list[dict[str, Any]], operator.add]
    """Generated questions removed or cut by question hygiene, each with its reason."""
    iteration: int
    """The tuning-loop pass now running (1-based)."""
    reports: Annotated[list[IterationReport], operator.add]
    """Scores and counts at the end of each pass."""
    events: Annotated[list[Event], operator.add]
    """Warnings and errors, each naming the item it concerns."""
    llm_calls: Annotated[list[LLMCall], operator.add]
    """Every chat-model call, with its node and tokens."""
    stages: Annotated[list[StageRun], operator.add]
    """Every node execution, with its time and usage."""
    hook_log: Annotated[list[HookChange], operator.add]
    """What each user hook changed."""
    summary_notes: list[SummaryNote]
    """Summary loop: notes taken on the data (map step), each with its source spans."""
    summary: SummaryDraft
    """Summary loop: the summary being tuned, with its claims and judgements."""
    rewrites: Annotated[dict[str, RewriteItem], merge_rewrites]
    """Rewrite loop: every unit of the data and its rewrite, by id, in every status."""
    judge_selftest: JudgeSelfTest | None
    """How well each judge metric told right answers from wrong ones (run once)."""
    rag: dict[str, Any] | None
    """The RAG sweep's result (chosen parameters and the table tried)."""
    bundle_dir: str
    """Where the output bundle was written."""
    status: RunStatus
    """Where the run stands."""


class OutputState(TypedDict, total=False):
    """What a finished run returns."""

    run_id: str
    status: RunStatus
    bundle_dir: str
    reports: list[IterationReport]
    pairs: dict[str, QAPair]
    summary: SummaryDraft
    rewrites: dict[str, RewriteItem]
    events: list[Event]


class AnswerTask(TypedDict):
    """The input of one `answer` task (sent once per question needing an answer)."""

    pair: QAPair
    persona: PersonaProfile
    goal: ResolvedGoal
    doc_ids: list[str]
    iteration: int
    spec: NotRequired[RunSpec]
    """The run's spec (for a run invoked without a context: see `graph.context.default_context`)."""


class JudgeTask(TypedDict):
    """The input of one `evaluate` task (sent once per answered pair)."""

    pair: QAPair
    persona: PersonaProfile
    goal: ResolvedGoal
    spec: RunSpec
    iteration: int
    questions: NotRequired[list[str]]
    """Every question of the run (the relevance judge's contrast)."""
    selftest: NotRequired[JudgeSelfTest | None]
    """The judges' self-test when it has run (which cheap gates may skip the rest)."""


class SelfTestTask(TypedDict):
    """The input of the `selftest_judges` task (sent once, beside the first judging)."""

    pairs: list[QAPair]
    persona: PersonaProfile
    goal: ResolvedGoal
    doc_ids: list[str]
    spec: RunSpec
