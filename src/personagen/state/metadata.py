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
    unverified: int = Field(0, description="Pairs only an untrusted judge would accept.")
    failing: int
    unanswerable: int
    baseline_met: bool
    shortfalls: list[str] = Field(default_factory=list, description="What fell short, in words.")


class MetricSelfTest(BaseModel):
    """How well one judge metric told known-good pairs from known-bad ones in this run."""

    metric: str
    auc: float | None = Field(
        description="P(a good probe scores above a bad one), ties half; None: not measurable."
    )
    accuracy: float | None = Field(
        None, description="Balanced accuracy at the metric's baseline (None: not in it)."
    )
    good: list[float | None] = Field(default_factory=list, description="Scores of good probes.")
    bad: list[float | None] = Field(default_factory=list, description="Scores of bad probes.")
    passed: bool
    reason: str


class JudgeSelfTest(BaseModel):
    """The judges' self-test: probes built from the run's own data, judged like real pairs.

    A metric that did not pass does not decide acceptance: pairs that pass every trusted
    gate are `unverified` instead of `accepted` while such a metric is in the baseline.
    """

    probes: int = Field(description="Probe questions (each judged once right, once wrong).")
    source: Literal["questions", "passages", "none"] = Field(
        description="Probes from the run's generated questions and the excerpts they came "
        "from, or from passages sampled from the data with a question written for each."
    )
    min_auc: float
    metrics: dict[str, MetricSelfTest] = Field(default_factory=dict)
    tokens: int = 0
    seconds: float = 0.0
    note: str | None = None

    def trusted(self, metric: str) -> bool:
        """Whether `metric` passed (a metric the self-test did not measure is not trusted)."""
        found = self.metrics.get(metric)
        return bool(found and found.passed)

    def failed(self) -> list[MetricSelfTest]:
        """The metrics that did not pass, in order."""
        return [m for m in self.metrics.values() if not m.passed]
