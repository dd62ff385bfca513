"""Structured-output modes for OpenAI-compatible servers, and which one each endpoint takes.

Servers that speak the OpenAI API differ in how they constrain output to a schema:

- OpenAI, vLLM, Ollama (0.5+), LM Studio: `response_format: {"type": "json_schema", ...}`;
- llama.cpp's Python server (`llama_cpp.server`): only `{"type": "json_object", "schema":
  {...}}` (it rejects `json_schema` with HTTP 500 "Input should be 'text' or 'json_object'");
- most of them: tool calling with a forced tool; every one of them: plain text.

`MODE_ORDER` is the order `auto` tries them in, best first. A mode the server rejects (an
HTTP 4xx/5xx whose message names `response_format`, the schema or the tools) or answers with
JSON of another shape (the server ignored the schema) moves the client to the next mode; a
transient error (timeout, 429, 5xx about something else) does not. The mode that worked is
remembered per endpoint and model in `<state_dir>/structured_modes.json`, so later runs start
with it.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

log = logging.getLogger(__name__)

Mode = Literal["json_schema", "json_mode", "function_calling", "prompt"]
MODE_ORDER: tuple[Mode, ...] = ("json_schema", "json_mode", "function_calling", "prompt")
"""Best first: enforced schema, JSON with the schema beside it, a forced tool, prompt-and-parse."""

MODES_FILE = "structured_modes.json"

# Words in an error that say the server refused the *way* output was requested.
_FORMAT_WORDS = ("response_format", "json_schema", "json_object", "schema", "grammar", "guided")
_TOOL_WORDS = ("tool", "function")
# Statuses that are about the request, never about load: 429/502/503/504 stay transient.
_REJECTING_STATUSES = frozenset({400, 404, 405, 415, 422, 500, 501})


def endpoint_key(base_url: str | None, model: str) -> str:
    """The key a mode is remembered under: the endpoint and the model it serves."""
    return f"{(base_url or 'https://api.openai.com/v1').rstrip('/')} {model}"


def error_text(exc: BaseException) -> str:
    """The message and body of an API error, lower-cased (what rejection is judged from)."""
    parts = [str(exc)]
    body = getattr(exc, "body", None)
    if body is not None:
        parts.append(json.dumps(body, default=str) if not isinstance(body, str) else body)
    return " ".join(parts).lower()


def names_structured_output(exc: BaseException) -> bool:
    """Whether a server error is about `response_format` (retrying it cannot help)."""
    return any(word in error_text(exc) for word in ("response_format", "json_schema"))


def rejection_reason(exc: BaseException, mode: Mode) -> str | None:
    """Why the server refused `mode`, or None if `exc` is not such a refusal.

    A refusal is an HTTP error with a request-side status whose message names what `mode`
    sends: the response format or schema for the JSON modes, the tools for tool calling.
    """
    status = getattr(exc, "status_code", None)
    if status not in _REJECTING_STATUSES:
        return None
    text = error_text(exc)
    words = _TOOL_WORDS if mode == "function_calling" else _FORMAT_WORDS
    if not any(word in text for word in words):
        return None
    body = getattr(exc, "body", None)
    inner = body.get("message") if isinstance(body, dict) else None
    message = " ".join(str(inner or exc).split()) or type(exc).__name__
    return f"HTTP {status}: {message[:160]}"


def shape_problem(data: Any, schema: type[BaseModel]) -> str | None:
    """How `data` (parsed JSON) differs in shape from `schema`'s object, or None.

    Only the top level is compared: a missing required key or a key the schema does not
    declare. A server that honours the schema never produces either; a value out of range is
    a model's mistake, not a server's, and is repaired as usual.
    """
    if not isinstance(data, dict):
        return f"a JSON {type(data).__name__} where an object was expected"
    json_schema = schema.model_json_schema()
    properties = json_schema.get("properties") or {}
    missing = [key for key in json_schema.get("required", []) if key not in data]
    unknown = [key for key in data if properties and key not in properties]
    if missing or unknown:
        return f"JSON with keys {sorted(data)[:8]} where {schema.__name__} has {list(properties)}"
    return None


def request_options(mode: Mode, name: str, bounded: dict[str, Any]) -> dict[str, Any]:
    """The request fields that ask an OpenAI-compatible server for `bounded` JSON in `mode`.

    `json_mode` sends the schema beside `json_object`: llama.cpp's server turns it into a
    grammar; servers that do not know the key ignore it (the schema is in the prompt too).
    """
    if mode == "json_schema":
        return {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": name, "schema": bounded, "strict": False},
            }
        }
    if mode == "json_mode":
        return {"response_format": {"type": "json_object", "schema": bounded}}
    if mode == "function_calling":
        tool = {"type": "function", "function": {"name": name, "parameters": bounded}}
        return {"tools": [tool], "tool_choice": {"type": "function", "function": {"name": name}}}
    return {}


def example_instance(json_schema: dict[str, Any]) -> Any:
    """A filled example of `json_schema` for the prompt: every field present, typed values.

    Strings show the field's description (or name) in angle brackets; a schema's own
    `examples` are used where given.
    """
    defs = {**json_schema.get("definitions", {}), **json_schema.get("$defs", {})}
    return _example(json_schema, defs, "value", ())


def _example(node: Any, defs: dict[str, Any], name: str, seen: tuple[str, ...]) -> Any:
    if not isinstance(node, dict):
        return None
    ref = node.get("$ref")
    if isinstance(ref, str):
        key = ref.rsplit("/", 1)[-1]
        if key in seen or key not in defs:  # a recursive model: stop at the first repeat
            return None
        merged = {**defs[key], **{k: v for k, v in node.items() if k != "$ref"}}
        return _example(merged, defs, name, (*seen, key))
    examples = node.get("examples")
    if isinstance(examples, list) and examples:
        return examples[0]
    if "const" in node:
        return node["const"]
    if isinstance(node.get("enum"), list) and node["enum"]:
        return node["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        branches = [b for b in node.get(key) or [] if b.get("type") != "null"]
        if branches:
            return _example({**branches[0], **_annotations(node)}, defs, name, seen)
    kind = node.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind == "object" or "properties" in node:
        return {
            key: _example(sub, defs, key, seen)
            for key, sub in (node.get("properties") or {}).items()
        }
    if kind == "array":
        item = _example(node.get("items") or {}, defs, name, seen)
        return [item] * max(1, int(node.get("minItems", 1)))
    if kind == "integer":
        if isinstance(node.get("exclusiveMinimum"), int | float):
            return int(node["exclusiveMinimum"]) + 1
        return int(node.get("minimum") or 0)
    if kind == "number":
        return float(node.get("minimum", 0.5))
    if kind == "boolean":
        return True
    if kind == "string":
        text = str(node.get("description") or node.get("title") or name).strip().rstrip(".")
        return f"<{text[:80]}>"
    return None


def _annotations(node: dict[str, Any]) -> dict[str, Any]:
    return {k: node[k] for k in ("description", "title") if k in node}


def schema_instructions(schema: type[BaseModel], *, example: bool) -> str:
    """The prompt text that asks for one JSON object of `schema` (with a filled example)."""
    json_schema = schema.model_json_schema()
    text = (
        "Reply with only one JSON object, no prose and no code fence, that matches this JSON "
        f"schema:\n{json.dumps(json_schema, ensure_ascii=False, separators=(',', ':'))}"
    )
    if example:
        filled = json.dumps(example_instance(json_schema), ensure_ascii=False)
        text += f"\nAn example of the shape (replace every value):\n{filled}"
    return text


class ModeMemory:
    """The structured-output mode that works for each endpoint/model, in a small JSON file.

    Reads are served from memory after the first; a write replaces the file atomically, so a
    crash never leaves it half-written. Two processes writing at once keep the later write.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._data: dict[str, dict[str, Any]] | None = None

    def _load(self) -> dict[str, dict[str, Any]]:
        if self._data is None:
            try:
                raw = json.loads(self.path.read_text(encoding="utf-8"))
                endpoints = raw.get("endpoints", {}) if isinstance(raw, dict) else {}
                self._data = {k: v for k, v in endpoints.items() if isinstance(v, dict)}
            except FileNotFoundError:
                self._data = {}
            except (OSError, ValueError) as exc:  # unreadable: start over, never fail a run
                log.warning("ignoring unreadable %s (%s)", self.path, exc)
                self._data = {}
        return self._data

    def get(self, key: str) -> Mode | None:
        """The mode remembered for `key`, if any."""
        with self._lock:
            mode = self._load().get(key, {}).get("mode")
        return mode if mode in MODE_ORDER else None

    def set(self, key: str, mode: Mode, reason: str = "") -> None:
        """Remember `mode` for `key` (and why the better modes were left)."""
        with self._lock:
            data = self._load()
            entry = {"mode": mode, "updated": datetime.now(UTC).isoformat(timespec="seconds")}
            if reason:
                entry["reason"] = reason
            if data.get(key, {}).get("mode") == mode and not reason:
                return
            data[key] = entry
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".modes-", suffix=".json")
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    json.dump({"version": 1, "endpoints": data}, out, indent=2, sort_keys=True)
                os.replace(tmp, self.path)
            except OSError as exc:  # a read-only state dir costs a probe next run, nothing more
                log.warning("cannot remember the structured-output mode in %s: %s", self.path, exc)
