"""Goal models: a goal file's definition and the resolved goal a run uses. No I/O here."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Loop = Literal["qa", "summary", "rewrite"]
"""The tuning loop a goal runs: Q/A pairs, one summary, or per-unit rewrites."""


class PromptTemplate(BaseModel):
    """A system + user message pair, with an optional variant for the embedded model."""

    model_config = ConfigDict(extra="forbid")

    system: str
    user: str
    embedded: PromptTemplate | None = None


class GoalDefinition(BaseModel):
    """A goal as written in a goal file."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    description: str = Field(min_length=1)
    loop: Loop
    metrics: list[str] = Field(min_length=1)
    baseline: dict[str, float] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    prompts: dict[str, PromptTemplate]
    extends: str | None = Field(
        None,
        description="A library goal this one starts from: its loop, metrics, baseline, params "
        "and prompts apply unless this file sets them.",
    )
    small_judge: SmallJudge | None = Field(
        None,
        description="Metrics and baseline used when the judge is a small embedded model.",
    )


class SmallJudge(BaseModel):
    """What a goal judges with when the judge model is a tiny local one.

    Judges are measured by each run's self-test; those a tiny model fails on every data set
    tried (see the goal file) are left out, so an offline run can still accept pairs. A
    metric the user puts in `goal.baseline` is judged anyway.
    """

    model_config = ConfigDict(extra="forbid")

    metrics: list[str] = Field(min_length=1)
    baseline: dict[str, float] = Field(default_factory=dict)


class ResolvedGoal(BaseModel):
    """A goal with the user's prompts, params and baseline merged in: what a run uses."""

    name: str
    description: str
    loop: Loop
    source: str = Field(description="'library:<name>' or the goal file's path.")
    metrics: list[str]
    baseline: dict[str, float]
    params: dict[str, Any]
    user_prompts: list[str]
    prompts: dict[str, PromptTemplate]
    extends: str | None = Field(None, description="The library goal this goal extends, if any.")

    def param(self, key: str) -> Any:
        """A parameter's value; KeyError names the goal and the key."""
        try:
            return self.params[key]
        except KeyError:
            raise KeyError(f"goal {self.name!r} has no parameter {key!r}") from None
