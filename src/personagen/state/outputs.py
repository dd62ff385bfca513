"""What the `summary` and `rewrite` loops produce: summaries, rewritten units, their claims.

Pure pydantic models and the state keys the two loops add to the graph state. Document text
stays in the chunk store: a rewritten unit keeps its source as (document id, start, end), and
claims keep only the short source spans they rest on, so checkpoints stay small.
"""

from __future__ import annotations

from typing import Annotated, Literal, NotRequired, TypedDict

from pydantic import BaseModel, Field

from personagen.state.documents import Span
from personagen.state.goal import ResolvedGoal
from personagen.state.items import PersonaProfile
from personagen.state.results import Violation
from personagen.state.spec import RunSpec

OutputStatus = Literal[
    "pending",  # needs generating
    "generated",  # needs judging
    "accepted",  # meets every baseline and constraint
    "failing",  # fell short; the refine node reworks it
    "not_applicable",  # the instruction does not apply to this unit (kept and reported)
    "rejected",  # given up on at the last pass, written out with its reasons
]


class Claim(BaseModel):
    """A factual claim of a generated text and the source text it rests on."""

    text: str = Field(description="The claim, as the judge stated it.")
    quote: str = Field("", description="The supporting sentence the judge quoted, if any.")
    supported: bool = Field(False, description="True when the quote was found in the sources.")
    spans: list[Span] = Field(default_factory=list, description="Where the quote is in the data.")
    part: int | None = Field(None, description="Index of the section or part it comes from.")


class SummaryNote(BaseModel):
    """A point of the data that matters to the persona (the map step's output)."""

    id: str = Field(description="'n<k>', in the order notes were taken.")
    point: str
    quote: str = Field(description="The verbatim source sentence the point rests on.")
    group: str = Field(description="Chunk id of the excerpt it was taken from, or 'combined'.")
    spans: list[Span] = Field(default_factory=list, description="Where the quote is in the data.")
    level: int = Field(0, description="0 for notes taken on the data, 1+ after merging.")
    used: bool = Field(False, description="Given to the writer (the reduce step).")

    @property
    def grounded(self) -> bool:
        """Whether the quote was found in the data (ungrounded notes are never summarized)."""
        return bool(self.spans)


class NeedCoverage(BaseModel):
    """How well a summary covers one of the persona's needs."""

    need: str
    in_data: bool | None = Field(None, description="Whether the data addresses the need at all.")
    score: float | None = Field(None, description="0..1; None when it could not be judged.")
    reason: str = ""


class SummarySection(BaseModel):
    """One section of a summary."""

    heading: str
    text: str


class JudgedOutput(BaseModel):
    """What every judged output of the summary and rewrite loops carries."""

    status: OutputStatus = "pending"
    claims: list[Claim] = Field(default_factory=list)
    scores: dict[str, float] = Field(default_factory=dict)
    reasons: dict[str, str] = Field(default_factory=dict, description="Judge reasons by metric.")
    violations: list[Violation] = Field(default_factory=list)
    feedback: list[str] = Field(
        default_factory=list, description="Why it is not accepted; fed to the next attempt."
    )
    attempts: int = Field(0, description="Generations so far.")
    iteration: int = Field(1, description="The pass that produced the current version.")
    error: str | None = Field(None, description="Why the last model call for it failed.")
    history: list[dict[str, object]] = Field(
        default_factory=list, description="Earlier versions with the reasons they were reworked."
    )


class SummaryDraft(JudgedOutput):
    """The summary being tuned, with its claims, need coverage and judgements."""

    title: str = ""
    sections: list[SummarySection] = Field(default_factory=list)
    needs: list[NeedCoverage] = Field(default_factory=list)

    def markdown(self) -> str:
        """The summary as Markdown (what is judged, checked and written to summary.md)."""
        lines = [f"# {self.title.strip()}"] if self.title.strip() else []
        for section in self.sections:
            if section.heading.strip():
                lines.append(f"## {section.heading.strip()}")
            lines.append(section.text.strip())
        return "\n\n".join(lines).strip() + "\n"


class RewriteItem(JudgedOutput):
    """One unit of the data (a section, chunk or document) and its rewrite."""

    id: str = Field(description="'u' + a hash of the source range: stable across runs.")
    doc_id: str
    source: str = Field(description="The document's source (path, URL, inline name).")
    unit_index: int = Field(description="Position of the unit in the run's unit order.")
    start: int = Field(description="Character offset of the unit in its document.")
    end: int
    applicable: bool | None = Field(None, description="False when the instruction did not apply.")
    parts: list[str] = Field(default_factory=list, description="The rewrite, in parts.")

    @property
    def output(self) -> str:
        """The rewrite as one text."""
        return "\n\n".join(p.strip() for p in self.parts if p.strip())


class RewriteTask(TypedDict):
    """The input of one `rewrite` task (sent once per unit needing a rewrite)."""

    item: RewriteItem
    persona: PersonaProfile
    goal: ResolvedGoal
    iteration: int
    spec: NotRequired[RunSpec]
    """The run's spec (for a run invoked without a context: see `graph.context.default_context`)."""


def merge_rewrites(
    left: dict[str, RewriteItem] | None, right: dict[str, RewriteItem] | None
) -> dict[str, RewriteItem]:
    """Merge rewrite updates by id; a later version of a unit replaces the earlier one."""
    merged = dict(left or {})
    merged.update(right or {})
    return merged


class GoalLoopState(TypedDict, total=False):
    """The graph-state keys of the summary and rewrite loops (mixed into `State`)."""

    summary_notes: list[SummaryNote]
    """Notes taken on the data by the summary loop's map step (replaced, written once)."""
    summary: SummaryDraft
    """The summary being tuned (replaced at every pass)."""
    rewrites: Annotated[dict[str, RewriteItem], merge_rewrites]
    """Every rewritten unit by id, in every status."""
