"""Example user plugins used by the hook/plugin tests (importable as tests.plugins_pkg)."""

from __future__ import annotations

from typing import Any


def drop_costs(items: list[Any], context: Any) -> list[Any]:
    """An after_questions hook: drop questions about costs."""
    return [i for i in items if "cost" not in i.question.lower()]


def brevity(question: str, answer: str, contexts: list[str], persona: Any) -> tuple[float, str]:
    """A metric plugin: 1.0 for answers of at most 12 words."""
    words = len(answer.split())
    return (1.0 if words <= 12 else 0.0), f"{words} words"


def mentions(text: str, *, field: str, options: dict[str, Any]) -> str | None:
    """A constraint plugin: matches when the text mentions options['word']."""
    word = options["word"]
    return f"mentions {word!r}" if word.lower() in text.lower() else None


def broken(items: list[Any], context: Any) -> list[Any]:
    raise RuntimeError("database unreachable")
