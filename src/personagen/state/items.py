"""The items a run produces: the composed persona and Q/A pairs with their judgements."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from personagen.state.documents import Span
from personagen.state.results import Violation
from personagen.state.spec import Expertise

PairStatus = Literal[
    "pending",  # needs an answer
    "answered",  # needs judging
    "judged",  # judged, constraints not yet checked
    "accepted",  # meets every baseline and constraint, judged by judges that passed their self-test
    "unverified",  # would be accepted, but a baseline judge failed its self-test
    "failing",  # fell short; refine will rework it
    "unanswerable",  # the data does not answer it (kept and reported)
    "rejected",  # given up on, written to rejected.jsonl with its reasons
]
Origin = Literal["generated", "custom", "reviewer", "hook"]


class PersonaProfile(BaseModel):
    """The composed persona every prompt is written for."""

    name: str
    description: str
    role: str | None = None
    expertise: Expertise | None = None
    language: str = "en"
    goals: list[str] = Field(default_factory=list)
    pain_points: list[str] = Field(default_factory=list)
    interests: list[str] = Field(default_factory=list)
    style: str | None = None
    custom_questions: list[str] = Field(default_factory=list)
    supplemental: str | None = None
    composed_by: Literal["spec", "llm"] = Field(
        "spec", description="'llm' when fields were inferred from a bare description."
    )

    @property
    def needs(self) -> list[str]:
        """The information needs the data should cover (goals, pain points, interests)."""
        return [*self.goals, *self.pain_points, *self.interests]

    def render(self) -> str:
        """A prompt-ready description of the persona."""
        lines = [f"Name: {self.name}", f"Description: {self.description}"]
        if self.role:
            lines.append(f"Role: {self.role}")
        if self.expertise:
            lines.append(f"Expertise in the subject: {self.expertise}")
        lines.append(f"Language: {self.language}")
        for label, items in (
            ("Goals", self.goals),
            ("Pain points", self.pain_points),
            ("Interests", self.interests),
        ):
            if items:
                lines.append(f"{label}: " + "; ".join(items))
        if self.style:
            lines.append(f"Prefers: {self.style}")
        if self.supplemental:
            lines.append(f"Also: {self.supplemental}")
        return "\n".join(lines)

    def short(self) -> str:
        """A one-line description for small models."""
        parts = [self.name, self.role or self.description]
        if self.expertise:
            parts.append(f"{self.expertise} in the subject")
        return ", ".join(p for p in parts if p)[:300]


class RetrievedContext(BaseModel):
    """A chunk handed to the answering model."""

    chunk_id: str
    doc_id: str
    start: int
    end: int
    score: float
    text: str


class QAPair(BaseModel):
    """A question, its grounded answer, and every judgement made about it."""

    id: str = Field(description="Stable id: 'q' + a hash of the first question text.")
    question: str
    origin: Origin = "generated"
    seed_doc_id: str | None = Field(None, description="Document the question was drawn from.")
    seed_start: int | None = Field(None, description="Start of the excerpt it was drawn from.")
    seed_end: int | None = None
    answer: str = ""
    answerable: bool | None = None
    contexts: list[RetrievedContext] = Field(default_factory=list)
    spans: list[Span] = Field(default_factory=list, description="Source text the answer rests on.")
    unmatched_quotes: list[str] = Field(
        default_factory=list, description="Quotes the model gave that are not in the sources."
    )
    scores: dict[str, float] = Field(default_factory=dict)
    reasons: dict[str, str] = Field(default_factory=dict, description="Judge reasons by metric.")
    violations: list[Violation] = Field(default_factory=list)
    failed_checks: list[str] = Field(
        default_factory=list,
        description="What the pair failed, by kind ('answer_relevancy below 0.50', "
        "'no source span', 'constraint pii', ...): the same words for every pair, so they group.",
    )
    status: PairStatus = "pending"
    feedback: list[str] = Field(
        default_factory=list, description="Reasons fed to the next regeneration."
    )
    answer_attempts: int = 0
    question_attempts: int = 1
    iteration: int = 1
    error: str | None = Field(None, description="Why the last model call for it failed.")
    history: list[dict[str, object]] = Field(
        default_factory=list, description="Earlier versions with the reasons they were reworked."
    )
