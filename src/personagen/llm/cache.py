"""The on-disk response cache: a rerun of the same inputs costs zero tokens.

LangChain's SQLite cache keyed by the prompt and the model's parameters (model name,
temperature, bound schema, ...). Hits are marked so accounting can count them and charge
no tokens for them.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel

# langchain_community's cache deserializes with loads(), which warns about a future default
# on every hit; our cache holds only what this process wrote.
warnings.filterwarnings(
    "ignore", message="The default value of `allowed_objects`", category=PendingDeprecationWarning
)


def _cache_class() -> type:
    from langchain_community.cache import SQLiteCache

    class MarkingSQLiteCache(SQLiteCache):
        """SQLiteCache whose hits carry `generation_info["cached"] = True`."""

        def lookup(self, prompt: str, llm_string: str) -> Any:
            found = super().lookup(prompt, llm_string)
            for generation in found or []:
                generation.generation_info = {**(generation.generation_info or {}), "cached": True}
            return found

    return MarkingSQLiteCache


def with_response_cache(chat: BaseChatModel, path: Path) -> BaseChatModel:
    """A copy of `chat` whose responses are cached in the SQLite file at `path`."""
    from sqlalchemy import event

    path.parent.mkdir(parents=True, exist_ok=True)
    cache = _cache_class()(str(path))

    @event.listens_for(cache.engine, "connect")
    def _pragmas(connection: Any, _record: Any) -> None:
        # WAL + NORMAL: no fsync per cached response; a killed process loses nothing.
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    cache.engine.dispose()  # connections made before the listener get the pragmas too
    return chat.model_copy(update={"cache": cache})
