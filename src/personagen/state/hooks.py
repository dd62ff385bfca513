"""What user hooks see and return, and the record of what each hook changed."""

from __future__ import annotations

from pydantic import BaseModel, Field


class HookItem(BaseModel):
    """A Q/A item as a hook sees it.

    Return it changed to edit it, leave it out to filter it, add one with `id=None` to add.
    """

    id: str | None = Field(None, description="None for an item the hook adds.")
    question: str
    answer: str | None = None
    status: str = "pending"
    origin: str = "hook"
    scores: dict[str, float] = Field(default_factory=dict)
    reasons: list[str] = Field(default_factory=list)


class HookContext(BaseModel):
    """Where the hook runs."""

    hook: str
    run_id: str
    iteration: int
    goal: str
    persona_name: str


class HookChange(BaseModel):
    """What one hook call changed."""

    hook: str
    name: str
    iteration: int
    removed: list[str] = Field(default_factory=list)
    edited: list[str] = Field(default_factory=list)
    added: list[str] = Field(default_factory=list)
