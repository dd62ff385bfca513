"""Progress of a run from its streamed events: counts per stage, tokens vs estimate, ETA.

The graph streams a `custom` event when a node's task starts or ends (with its tokens) and
an `updates` event when a task's result is saved. `ProgressTracker` folds them into one
snapshot a terminal, a callback or `astream` can show:

    {"stage": "answer", "iteration": 1, "done": 7, "total": 12, "tokens": 18_400,
     "expected_tokens": 37_000, "elapsed": 41.2, "eta": 40.0}

`total` is the number of tasks the stage started (every task of a fan-out starts at once);
`eta` is None until tokens are spent and an estimate is known (the CLI passes the pre-run
estimate), and is a projection at the rate spent so far, not a promise.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_VERBS = {
    "answer": "answered",
    "evaluate": "judged",
    "generate_questions": "questions",
    "summarize": "summarized",
    "rewrite": "rewritten",
}


@dataclass
class _Stage:
    started: int = 0
    finished: int = 0


@dataclass
class ProgressTracker:
    """Folds streamed graph events into progress snapshots."""

    expected_tokens: int | None = None
    """The pre-run estimate of the run's tokens (None: no ETA)."""
    clock: Callable[[], float] = time.monotonic
    tokens: int = 0
    stage: str | None = None
    iteration: int | None = None
    _stages: dict[tuple[str, int | None], _Stage] = field(default_factory=dict)
    _start: float | None = None

    def feed(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """Take one `{"mode", "data"}` event; return a snapshot when progress changed."""
        if self._start is None:
            self._start = self.clock()
        data = event.get("data")
        if event.get("mode") != "custom" or not isinstance(data, dict) or "stage" not in data:
            return None
        kind = data.get("event")
        if kind not in ("start", "end"):
            return None
        name, iteration = str(data["stage"]), data.get("iteration")
        stage = self._stages.setdefault((name, iteration), _Stage())
        if kind == "start":
            stage.started += 1
            self.stage, self.iteration = name, iteration
        else:
            stage.finished += 1
            self.tokens += int(data.get("tokens", 0) or 0)
        return self.snapshot()

    def snapshot(self) -> dict[str, Any]:
        """The current progress."""
        elapsed = 0.0 if self._start is None else self.clock() - self._start
        key = (self.stage or "", self.iteration)
        # A fan-out still under way (answers, judgements) says more than a single task that
        # started beside it (the judges' self-test), so it is the one shown.
        busy = [k for k, st in self._stages.items() if st.started > max(st.finished, 1)]
        if busy:
            key = busy[-1]
        current = self._stages.get(key, _Stage())
        eta = None
        if self.expected_tokens and self.tokens > 0:
            share = min(self.tokens / self.expected_tokens, 0.99)
            eta = max(0.0, elapsed * (1 - share) / share)
        return {
            "stage": key[0] or None,
            "iteration": key[1],
            "done": current.finished,
            "total": current.started,
            "tokens": self.tokens,
            "expected_tokens": self.expected_tokens,
            "elapsed": round(elapsed, 3),
            "eta": None if eta is None else round(eta, 1),
        }


def describe(snapshot: dict[str, Any]) -> str:
    """One line: `answered 7/12 (iteration 1) · 18,400 / ~37,000 tokens · ETA 40 s`."""
    stage = snapshot.get("stage") or "starting"
    verb = _VERBS.get(stage, stage.replace("_", " "))
    parts = [verb]
    if snapshot.get("total", 0) > 1 or stage in _VERBS:
        parts[0] = f"{verb} {snapshot['done']}/{snapshot['total']}"
    if snapshot.get("iteration"):
        parts[0] += f" (iteration {snapshot['iteration']})"
    tokens = f"{snapshot.get('tokens', 0):,}"
    if snapshot.get("expected_tokens"):
        tokens += f" / ~{snapshot['expected_tokens']:,}"
    parts.append(f"{tokens} tokens")
    if snapshot.get("eta") is not None:
        parts.append(f"ETA {snapshot['eta']:.0f} s")
    return " · ".join(parts)
