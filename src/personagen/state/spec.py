"""The run spec: who (persona), how (goal), what (data), output constraints, run and LLM options.

Pure pydantic models, no I/O. `personagen.specfile.load_spec` reads them from YAML/JSON and
turns validation errors into messages that name the file and the key path.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import regex
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    field_validator,
    model_validator,
)

Expertise = Literal["novice", "intermediate", "expert"]
ReviewHook = Literal["persona", "questions", "answers", "output"]
Provider = Literal["embedded", "openai", "fake"]
StructuredMode = Literal["auto", "json_schema", "function_calling", "json_mode", "prompt"]

_LANG_RE = re.compile(r"^[a-z]{2,3}(-[A-Za-z]{2,4})?$")


class _Strict(BaseModel):
    """Base for spec models: unknown keys are errors, strings are stripped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Persona(_Strict):
    """Who the data is personalized for, plus the user's supplemental input."""

    name: str = Field("Persona", min_length=1, max_length=200, description="Display name.")
    description: str = Field(
        ..., min_length=3, max_length=20_000, description="Who they are, in plain words."
    )
    role: str | None = Field(None, max_length=500, description="Occupation or role.")
    expertise: Expertise | None = Field(None, description="Their level in the data's domain.")
    language: str = Field("en", description="ISO 639-1 code of the language they read.")
    goals: list[str] = Field(default_factory=list, description="What they want to achieve.")
    pain_points: list[str] = Field(default_factory=list, description="What worries or blocks them.")
    interests: list[str] = Field(default_factory=list, description="Topics they care about.")
    style: str | None = Field(None, max_length=2_000, description="How they like to read.")
    custom_questions: list[str] = Field(
        default_factory=list, description="Questions to ask verbatim, on top of generated ones."
    )
    supplemental: str | None = Field(
        None, max_length=20_000, description="Free-form extra input for the goal."
    )

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        # `persona: "A nurse buying her first home"` is a bare description.
        if isinstance(value, str):
            return {"description": value}
        return value

    @field_validator("language")
    @classmethod
    def _language_code(cls, value: str) -> str:
        if not _LANG_RE.match(value):
            raise ValueError(f"{value!r} is not an ISO 639-1 language code such as 'en' or 'de'")
        return value.lower()

    @field_validator("goals", "pain_points", "interests", "custom_questions")
    @classmethod
    def _no_blank_items(cls, items: list[str]) -> list[str]:
        cleaned = [item.strip() for item in items]
        for index, item in enumerate(cleaned):
            if not item:
                raise ValueError(f"item {index} is empty")
        return cleaned

    @property
    def is_bare(self) -> bool:
        """True when only a description was given, so composing it needs an LLM call."""
        return not (self.role or self.expertise or self.goals or self.pain_points or self.interests)


class Goal(_Strict):
    """How to personalize: a library goal (or a goal file) plus the user's own prompts."""

    name: str = Field(
        "qa", min_length=1, description="Library goal name, or a path to a goal file."
    )
    prompts: list[str] = Field(
        default_factory=list, description="Supplemental instructions added to every generation."
    )
    params: dict[str, Any] = Field(default_factory=dict, description="Overrides of goal params.")
    baseline: dict[str, float] = Field(
        default_factory=dict, description="Per-metric minimum score (0..1) a pair must reach."
    )
    metrics: list[str] = Field(
        default_factory=list,
        description="Extra plugin metrics (entry-point names or 'pkg.module:function').",
    )

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"name": value}
        return value

    @field_validator("baseline")
    @classmethod
    def _scores_in_range(cls, baseline: dict[str, float]) -> dict[str, float]:
        for metric, score in baseline.items():
            if not 0.0 <= score <= 1.0:
                raise ValueError(f"baseline for {metric!r} must be between 0 and 1, got {score}")
        return baseline


class DataSource(_Strict):
    """One source of data: a file, directory or glob, an http(s) URL, or inline text."""

    path: str | None = Field(None, description="File, directory (recursive) or glob (`**`).")
    url: str | None = Field(None, description="http(s) URL of a document.")
    text: str | None = Field(None, description="Inline text.")
    name: str | None = Field(None, description="Label for inline text or to rename a source.")
    format: Literal["txt", "md", "rst", "html", "json", "jsonl", "csv", "pdf"] | None = Field(
        None, description="Override the format detected from the extension or content type."
    )
    encoding: str | None = Field(None, description="Text encoding; detected when omitted.")
    fields: list[str] = Field(
        default_factory=list, description="JSON/JSONL/CSV fields holding text (all when empty)."
    )
    exclude: list[str] = Field(default_factory=list, description="Glob patterns to skip.")
    max_bytes: PositiveInt = Field(50_000_000, description="Refuse sources larger than this.")
    timeout: float = Field(30.0, gt=0, le=600, description="Seconds allowed for a URL download.")

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            is_url = value.startswith(("http://", "https://"))
            return {"url": value} if is_url else {"path": value}
        return value

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> DataSource:
        given = [key for key in ("path", "url", "text") if getattr(self, key) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of 'path', 'url' or 'text'"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url {self.url!r} must start with http:// or https://")
        if self.text is not None and not self.text.strip():
            raise ValueError("inline 'text' is empty")
        return self

    @property
    def reference(self) -> str:
        """A short human-readable reference to this source."""
        if self.path is not None:
            return self.path
        if self.url is not None:
            return self.url
        return self.name or "inline text"


ConstraintKind = Literal[
    "regex", "keyword", "pii", "max_words", "min_words", "language", "topic", "plugin"
]
PII_KINDS = ("email", "phone", "credit_card", "ssn", "iban", "ip_address")


class ConstraintRule(_Strict):
    """One rule. Give exactly one of the kind keys (`regex`, `keyword`, `pii`, ...).

    In `filter_out` a rule is violated when it matches; in `check_for` when it does not.
    Length rules (`max_words`, `min_words`) mean the same in both lists.
    """

    regex: str | None = None
    keyword: list[str] | None = None
    pii: (
        bool | list[Literal["email", "phone", "credit_card", "ssn", "iban", "ip_address"]] | None
    ) = None
    max_words: PositiveInt | None = None
    min_words: PositiveInt | None = None
    language: str | None = None
    topic: str | None = Field(None, min_length=3, description="LLM-judged rule in plain words.")
    plugin: str | None = Field(
        None, description="A constraint checker: entry-point name or 'pkg.module:function'."
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Options passed to a plugin checker."
    )
    name: str | None = Field(None, description="Name shown in reports.")
    applies_to: Literal["question", "answer", "both"] = "answer"
    case_sensitive: bool = False

    @field_validator("keyword", mode="before")
    @classmethod
    def _keyword_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("regex")
    @classmethod
    def _valid_regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                regex.compile(value)  # the engine the checks use
            except regex.error as exc:
                raise ValueError(f"invalid regular expression {value!r}: {exc}") from exc
        return value

    @field_validator("language")
    @classmethod
    def _language_code(cls, value: str | None) -> str | None:
        if value is not None and not _LANG_RE.match(value):
            raise ValueError(f"{value!r} is not an ISO 639-1 language code")
        return value

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> ConstraintRule:
        kinds = [k for k in ConstraintKind.__args__ if getattr(self, k) not in (None, False)]  # type: ignore[attr-defined]
        if len(kinds) != 1:
            raise ValueError(
                "a rule needs exactly one of regex, keyword, pii, max_words, min_words, "
                f"language, topic, plugin (got {', '.join(kinds) or 'none'})"
            )
        if self.keyword is not None and not all(k.strip() for k in self.keyword):
            raise ValueError("keyword list holds an empty keyword")
        return self

    @property
    def kind(self) -> ConstraintKind:
        """Which kind of rule this is."""
        for kind in ConstraintKind.__args__:  # type: ignore[attr-defined]
            if getattr(self, kind) not in (None, False):
                return kind
        raise AssertionError("validated rule has no kind")  # pragma: no cover

    @property
    def label(self) -> str:
        """A stable, readable name for reports."""
        if self.name:
            return self.name
        value = getattr(self, self.kind)
        if isinstance(value, list):
            value = ",".join(map(str, value))
        return f"{self.kind}:{value}"


class Constraints(_Strict):
    """Output constraints: what to filter out and what every item must satisfy."""

    filter_out: list[ConstraintRule] = Field(default_factory=list)
    check_for: list[ConstraintRule] = Field(default_factory=list)

    @property
    def rules(self) -> list[tuple[Literal["filter_out", "check_for"], ConstraintRule]]:
        """All rules with the list they come from."""
        return [("filter_out", r) for r in self.filter_out] + [
            ("check_for", r) for r in self.check_for
        ]


class RunOptions(_Strict):
    """How the run is driven."""

    max_iterations: int = Field(3, ge=1, le=50, description="Tuning-loop passes at most.")
    review: list[ReviewHook] = Field(
        default_factory=list, description="Hooks where the run pauses for human review."
    )
    auto_approve: bool = Field(False, description="Approve every review hook automatically.")
    max_concurrency: int = Field(4, ge=1, le=256, description="Parallel LLM tasks at most.")
    max_tokens: PositiveInt | None = Field(None, description="Token budget for the whole run.")
    seed: int = Field(0, description="Seed for sampling, where the model supports one.")
    cache: bool = Field(
        True, description="Cache model responses on disk: a rerun of the same inputs is free."
    )

    @field_validator("review")
    @classmethod
    def _unique_hooks(cls, hooks: list[str]) -> list[str]:
        return list(dict.fromkeys(hooks))


class ModelPrice(_Strict):
    """What a hosted model costs, in USD per million tokens."""

    input: float = Field(..., ge=0, description="USD per 1M input (prompt) tokens.")
    output: float = Field(..., ge=0, description="USD per 1M output (completion) tokens.")


class LLMSettings(_Strict):
    """Which chat model and embeddings to use. Secrets come from the environment only."""

    provider: Provider = Field("embedded", description="embedded (offline), openai, or fake.")
    model: str | None = Field(None, description="Model name (openai provider).")
    base_url: str | None = Field(None, description="Any OpenAI-compatible endpoint.")
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="Name of the environment variable holding the API key."
    )
    model_path: str | None = Field(None, description="A local GGUF file (embedded provider).")
    embedding_model: str | None = Field(None, description="Embedding model (openai provider).")
    temperature: float = Field(0.2, ge=0.0, le=2.0)
    max_output_tokens: PositiveInt = Field(512, description="Cap on tokens per completion.")
    timeout: float = Field(120.0, gt=0, description="Seconds per request.")
    max_retries: int = Field(3, ge=0, le=20, description="Retries on timeouts, 429 and 5xx.")
    structured_output: StructuredMode = Field(
        "auto", description="How JSON is obtained: auto picks per provider."
    )
    context_window: PositiveInt = Field(8192, description="Model context size in tokens.")
    price: ModelPrice | None = Field(
        None, description="USD per 1M input/output tokens; overrides the built-in price table."
    )
    judge: LLMSettings | None = Field(
        None,
        description="A separate model (or endpoint) for the judges: every metric, the "
        "persona-fit judge and the judges' self-test. Default: the run's own model.",
    )

    @model_validator(mode="after")
    def _judge_has_no_judge(self) -> LLMSettings:
        if self.judge is not None and self.judge.judge is not None:
            raise ValueError("llm.judge cannot have a judge of its own")
        return self

    @model_validator(mode="before")
    @classmethod
    def _no_inline_secrets(cls, value: Any) -> Any:
        if isinstance(value, dict) and "api_key" in value:
            raise ValueError(
                "'api_key' must not be written in the spec; put the key in an environment "
                "variable and name it with 'api_key_env' (default OPENAI_API_KEY)"
            )
        return value

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"base_url {value!r} must start with http:// or https://")
        return value


HookPoint = Literal[
    "after_persona", "after_questions", "after_answers", "after_evaluation", "before_output"
]
HOOK_POINTS: tuple[str, ...] = HookPoint.__args__  # type: ignore[attr-defined]


class RunSpec(_Strict):
    """Everything one PersonaGen run needs."""

    persona: Persona
    goal: Goal = Field(default_factory=Goal)
    data: list[DataSource] = Field(..., min_length=1)
    constraints: Constraints = Field(default_factory=Constraints)
    run: RunOptions = Field(default_factory=RunOptions)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    hooks: dict[HookPoint, list[str]] = Field(
        default_factory=dict,
        description="User callables ('pkg.module:function') run at named points of the graph.",
    )
    base_dir: str | None = Field(
        None, description="Directory relative paths are resolved from (set by load_spec)."
    )

    @field_validator("hooks", mode="before")
    @classmethod
    def _hook_lists(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: [v] if isinstance(v, str) else v for k, v in value.items()}
        return value

    @field_validator("data", mode="before")
    @classmethod
    def _data_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str | dict) else value
