"""Outcomes of checking generated items against the spec: violations of constraint rules.

Pure pydantic models, no I/O. A `Violation` is written for two readers at once: a human
reading a report and an LLM asked to repair the item, so `reason` is a full sentence that says
what is wrong and, where it helps, what is allowed. Evidence is quoted from the checked text,
but PII evidence is always masked so reports never copy personal data.
"""

from __future__ import annotations

import builtins
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ListName = Literal["filter_out", "check_for"]
FieldName = Literal["question", "answer"]
# Aliases, because inside `Violation` the field called `list` shadows the builtin.
Evidence = list[str]


class Violation(BaseModel):
    """One constraint rule that one field of one item breaks."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rule: str = Field(description="The rule's label, as shown in reports (`ConstraintRule.label`).")
    kind: str = Field(description="The rule's kind: regex, keyword, pii, max_words, ... or topic.")
    list: ListName = Field(description="The constraints list the rule comes from.")
    field: FieldName = Field(description="Which field of the item breaks the rule.")
    reason: str = Field(
        description="A sentence a human and an LLM can act on, e.g. "
        "'answer has 143 words; at most 120 allowed'."
    )
    evidence: Evidence = Field(
        default_factory=builtins.list,
        description="Short excerpts of the text that triggered the rule; PII is masked.",
    )

    def __str__(self) -> str:
        return f"[{self.list}] {self.rule}: {self.reason}"
