"""Accounting and reporting models: LLM calls, stage timings, events, iteration scores."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class LLMCall(BaseModel):
    """One chat-model call."""

    node: str = Field(description="The graph node that made the call.")
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    seconds: float = 0.0
    cached: bool = Field(False, description="Served from the response cache (0 tokens spent).")


class StageRun(BaseModel):
    """One execution of a graph node."""

    node: str
    iteration: int
    started: float = Field(description="Unix time.")
    seconds: float
    llm_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_hits: int = 0
    retries: int = 0
    repairs: int = 0


class Event(BaseModel):
    """A warning or error worth reporting, with the item it concerns."""

    level: Literal["info", "warning", "error"]
    stage: str
    message: str
    item: str | None = Field(None, description="Id of the item concerned, if any.")


class IterationReport(BaseModel):
    """Scores and counts at the end of one tuning-loop pass."""

    iteration: int
    scores: dict[str, float] = Field(description="Mean of each metric over judged pairs.")
    accepted: int
    failing: int
    unanswerable: int
    baseline_met: bool
    shortfalls: list[str] = Field(default_factory=list, description="What fell short, in words.")
