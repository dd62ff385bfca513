"""The on-disk response cache: a rerun of the same inputs costs zero tokens.

A LangChain `BaseCache` on one SQLite file, keyed by a hash of the prompt and the model's
parameters (model name, temperature, bound schema, ...). Hits are marked so accounting can
count them and charge no tokens for them.

Why not `langchain_community`'s `SQLiteCache`: its async methods run each lookup and write in
a thread-pool executor through SQLAlchemy's ORM, ~1.5 ms of CPU and two thread hops per call;
here a lookup is one indexed read and a write one insert on the caller's thread (WAL,
`synchronous=NORMAL`: a killed process loses nothing, a power cut at most the last writes).
Values are LangChain's message dicts as JSON, not pickles, so the file holds only data.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_core.caches import BaseCache
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import message_to_dict, messages_from_dict
from langchain_core.outputs import ChatGeneration, Generation

_SCHEMA = "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL)"


class ResponseCache(BaseCache):
    """Chat responses in a SQLite file; hits carry `generation_info["cached"] = True`."""

    def __init__(self, path: str | Path) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            str(path), check_same_thread=False, isolation_level=None, timeout=60
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)

    @staticmethod
    def _key(prompt: str, llm_string: str) -> str:
        return hashlib.sha256(f"{llm_string}\x00{prompt}".encode()).hexdigest()

    def lookup(self, prompt: str, llm_string: str) -> Sequence[Generation] | None:
        """The cached generations for this prompt and model, marked as cached."""
        with self._lock:
            row = self._db.execute(
                "SELECT value FROM responses WHERE key = ?", (self._key(prompt, llm_string),)
            ).fetchone()
        if row is None:
            return None
        try:
            return [_load(item) for item in json.loads(row[0])]
        except (ValueError, KeyError, TypeError):
            return None  # unreadable (another version wrote it): a miss, overwritten later

    def update(self, prompt: str, llm_string: str, return_val: Sequence[Generation]) -> None:
        """Store the generations of one call (only chat generations are cached)."""
        if not all(isinstance(g, ChatGeneration) for g in return_val):
            return
        try:
            value = json.dumps([_dump(g) for g in return_val], ensure_ascii=False)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return  # a provider's extra that is not JSON: not cached; the call must not fail
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO responses (key, value) VALUES (?, ?)",
                (self._key(prompt, llm_string), value),
            )

    def clear(self, **kwargs: Any) -> None:
        """Forget every cached response."""
        with self._lock:
            self._db.execute("DELETE FROM responses")

    # A lookup or a write is well under a millisecond: done on the caller's thread rather
    # than through an executor (BaseCache's default), which costs more than the work.
    async def alookup(self, prompt: str, llm_string: str) -> Sequence[Generation] | None:
        """Async `lookup`."""
        return self.lookup(prompt, llm_string)

    async def aupdate(self, prompt: str, llm_string: str, return_val: Sequence[Generation]) -> None:
        """Async `update`."""
        self.update(prompt, llm_string, return_val)

    async def aclear(self, **kwargs: Any) -> None:
        """Async `clear`."""
        self.clear()

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()


def _dump(generation: ChatGeneration) -> dict[str, Any]:
    return {"message": message_to_dict(generation.message), "info": generation.generation_info}


def _load(item: dict[str, Any]) -> ChatGeneration:
    (message,) = messages_from_dict([item["message"]])
    return ChatGeneration(message=message, generation_info={**(item["info"] or {}), "cached": True})


def with_response_cache(chat: BaseChatModel, path: Path) -> BaseChatModel:
    """A copy of `chat` whose responses are cached in the SQLite file at `path`."""
    return chat.model_copy(update={"cache": ResponseCache(path)})
