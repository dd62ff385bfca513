"""Exceptions PersonaGen raises on purpose; each names the input it is about."""

from __future__ import annotations


class PersonaGenError(Exception):
    """Base class: an error the CLI prints as one clear line (no traceback without --debug)."""


class SpecError(PersonaGenError):
    """The run spec (or a goal file) is invalid; the message names the file and the key path."""


class DataSourceError(PersonaGenError):
    """A data source cannot be read; the message names the path, glob or URL."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"data source {source!r}: {reason}")
        self.source = source
        self.reason = reason


class LLMError(PersonaGenError):
    """A model call failed after its retries, or the provider is misconfigured."""


class StructuredOutputError(LLMError):
    """The model's output could not be parsed into the requested schema, even after repair."""

    def __init__(self, schema_name: str, raw: str, reason: str) -> None:
        snippet = raw if len(raw) <= 200 else raw[:200] + "..."
        super().__init__(f"could not parse {schema_name} from model output ({reason}): {snippet!r}")
        self.schema_name = schema_name
        self.raw = raw
        self.reason = reason


class BudgetExhausted(PersonaGenError):
    """The run's token budget would be exceeded by the next call."""


class RunNotFound(PersonaGenError):
    """No checkpoint exists for the given run id."""


class PluginError(PersonaGenError):
    """A user hook, metric or constraint plugin failed; the message names it. Resumable."""


class StopRun(PersonaGenError):
    """Raised by a user hook to stop the run on purpose (status `stopped`, resumable)."""
