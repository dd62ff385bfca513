"""Bound a JSON schema so llama.cpp's grammar always lets generation finish.

llama.cpp turns a JSON schema into a GBNF grammar and samples only tokens the grammar allows.
The output is valid JSON only if generation *finishes*: an unbounded string or array lets a
small model ramble until `max_tokens` cuts the JSON in half. `bound_schema` rewrites a schema
(typically `Model.model_json_schema()`) into the subset llama-cpp-python's converter handles,
with every string and array bounded:

- every unbounded string gets `maxLength`, every unbounded array `maxItems`
  (an existing `Field(max_length=...)` is kept as it is);
- `$ref`/`$defs` (and `allOf` wrappers) are inlined; a recursive schema is refused;
- `type: [a, b]` becomes `anyOf`, so each branch keeps its bounds;
- a small integer range (`ge`/`le`) becomes an `enum`, which the converter enforces
  (it ignores `minimum`/`maximum`);
- keys the converter rejects or ignores are dropped: annotations (`title`, `description`,
  `default`, ...), unanchored `pattern`s (the converter asserts `^...$`), unknown `format`s,
  `additionalProperties: true` next to declared properties, `uniqueItems`, and the like;
- by default every property is made required, so the grammar fixes the key order and a small
  model cannot stop after the first key (pydantic still fills defaults it would have used).

The result is for the grammar converter only; validate the model's output with the original
pydantic model.
"""

from __future__ import annotations

import copy
import math
from typing import Any

__all__ = ["bound_schema"]

# String formats the converter has rules for; others fall back to a bounded plain string.
_SUPPORTED_FORMATS = frozenset(
    {"date", "time", "date-time", "uuid", "uuid1", "uuid2", "uuid3", "uuid4", "uuid5"}
)
# An integer range up to this many values becomes an enum the grammar enforces.
_MAX_INT_ENUM = 64


def bound_schema(
    json_schema: dict[str, Any],
    *,
    max_string: int = 400,
    max_items: int = 8,
    require_all: bool = True,
) -> dict[str, Any]:
    """Return a copy of `json_schema` that llama.cpp's grammar converter accepts and bounds.

    Args:
        json_schema: A JSON schema, e.g. from `BaseModel.model_json_schema()`, with local
            `#/$defs/...` (or `#/definitions/...`) references.
        max_string: `maxLength` given to every string without one (raised to its
            `minLength` if that is larger).
        max_items: `maxItems` given to every array without one (raised to its `minItems`
            if that is larger).
        require_all: Make every declared property required, so the grammar always emits
            all keys in declaration order.

    Returns:
        A new, self-contained schema: no `$ref`, no `$defs`, every string and array bounded.

    Raises:
        ValueError: If a bound is not positive, a reference cannot be resolved, or the
            schema is recursive (its grammar could not be bounded).
    """
    if max_string < 1 or max_items < 1:
        raise ValueError("max_string and max_items must be at least 1")
    defs: dict[str, Any] = {}
    for key in ("definitions", "$defs"):
        found = json_schema.get(key)
        if isinstance(found, dict):
            defs.update(found)
    bounder = _Bounder(
        root=json_schema,
        defs=defs,
        max_string=max_string,
        max_items=max_items,
        require_all=require_all,
    )
    return bounder.visit(copy.deepcopy(json_schema), ())


class _Bounder:
    """One walk over a schema; `stack` holds the references being inlined (cycle check)."""

    def __init__(
        self,
        *,
        root: dict[str, Any],
        defs: dict[str, Any],
        max_string: int,
        max_items: int,
        require_all: bool,
    ) -> None:
        self.root = root
        self.defs = defs
        self.max_string = max_string
        self.max_items = max_items
        self.require_all = require_all

    def visit(self, node: Any, stack: tuple[str, ...]) -> dict[str, Any]:
        if node is True or node is None:
            return {}
        if node is False:
            raise ValueError("a 'false' schema accepts nothing and has no grammar")
        if not isinstance(node, dict):
            raise ValueError(f"expected a schema object, got {node!r}")
        node, stack = self._inline(node, stack)

        if "anyOf" in node or "oneOf" in node:
            branches = node.get("anyOf") or node.get("oneOf") or []
            bounded = [self.visit(branch, stack) for branch in branches]
            return bounded[0] if len(bounded) == 1 else {"anyOf": bounded}

        if "const" in node:
            return {"const": node["const"]}
        if "enum" in node:
            values = list(node["enum"])
            if not values:
                raise ValueError("an empty 'enum' accepts nothing and has no grammar")
            # Any JSON value is fine, whatever its text: `personagen.llm._grammar` escapes it.
            return {"enum": values}

        schema_type = node.get("type")
        if isinstance(schema_type, list):
            rest = {key: value for key, value in node.items() if key != "type"}
            branches = [self.visit({**rest, "type": item}, stack) for item in schema_type]
            return branches[0] if len(branches) == 1 else {"anyOf": branches}
        if schema_type is None:
            schema_type = _infer_type(node)

        if schema_type == "string":
            return self._string(node)
        if schema_type == "integer":
            return _integer(node)
        if schema_type == "array":
            return self._array(node, stack)
        if schema_type == "object":
            return self._object(node, stack)
        if schema_type in ("number", "boolean", "null"):
            return {"type": schema_type}
        # An untyped schema (`Any`): the converter reads `{}` as any JSON object.
        return {}

    def _inline(
        self, node: dict[str, Any], stack: tuple[str, ...]
    ) -> tuple[dict[str, Any], tuple[str, ...]]:
        """Replace `$ref` and `allOf` by their content, merged with the sibling keys.

        Returns the inlined node and the chain of `$ref`s followed to reach it; meeting a
        reference already in the chain means the schema is recursive. References inside
        `allOf` parts are not added to the chain (two parts may share a model without any
        recursion); a real cycle through them is still caught at its next `$ref`.
        """
        ref = node.get("$ref")
        if isinstance(ref, str):
            if ref in stack:
                chain = " -> ".join((*stack, ref))
                raise ValueError(f"recursive schemas cannot be bounded ({chain})")
            target = copy.deepcopy(self._resolve(ref))
            target.pop("$defs", None)
            target.pop("definitions", None)
            siblings = {key: value for key, value in node.items() if key != "$ref"}
            return self._inline({**target, **siblings}, (*stack, ref))
        all_of = node.get("allOf")
        if isinstance(all_of, list):
            merged = {key: value for key, value in node.items() if key != "allOf"}
            for part in all_of:
                part_node, _ = self._inline(dict(part), stack)
                _merge_into(merged, part_node)
            return merged, stack
        return node, stack

    def _resolve(self, ref: str) -> dict[str, Any]:
        if ref == "#":
            return self.root
        for prefix in ("#/$defs/", "#/definitions/"):
            if ref.startswith(prefix):
                name = ref[len(prefix) :]
                if name in self.defs:
                    return self.defs[name]
        raise ValueError(f"cannot resolve schema reference {ref!r} (only local $defs)")

    def _string(self, node: dict[str, Any]) -> dict[str, Any]:
        pattern = node.get("pattern")
        if isinstance(pattern, str) and pattern.startswith("^") and pattern.endswith("$"):
            # The converter ignores lengths when a pattern is given; the pattern bounds it.
            return {"type": "string", "pattern": pattern}
        schema_format = node.get("format")
        if schema_format in _SUPPORTED_FORMATS:
            return {"type": "string", "format": schema_format}
        out: dict[str, Any] = {"type": "string"}
        min_length = int(node.get("minLength", 0))
        if min_length:
            out["minLength"] = min_length
        max_length = node.get("maxLength")
        out["maxLength"] = (
            int(max_length) if max_length is not None else max(self.max_string, min_length)
        )
        return out

    def _array(self, node: dict[str, Any], stack: tuple[str, ...]) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "array"}
        prefix_items = node.get("prefixItems")
        if isinstance(prefix_items, list) and prefix_items:
            # A tuple: its length is fixed by the converter.
            out["prefixItems"] = [self.visit(item, stack) for item in prefix_items]
            return out
        items = node.get("items")
        out["items"] = self.visit(items if isinstance(items, dict) else {}, stack)
        min_items = int(node.get("minItems", 0))
        if min_items:
            out["minItems"] = min_items
        max_items = node.get("maxItems")
        out["maxItems"] = (
            int(max_items) if max_items is not None else max(self.max_items, min_items)
        )
        return out

    def _object(self, node: dict[str, Any], stack: tuple[str, ...]) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "object"}
        properties = node.get("properties") or {}
        if properties:
            out["properties"] = {name: self.visit(sub, stack) for name, sub in properties.items()}
            if self.require_all:
                out["required"] = list(properties)
            else:
                required = [name for name in node.get("required", []) if name in properties]
                if required:
                    out["required"] = required
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            out["additionalProperties"] = self.visit(extra, stack)
        elif extra is False and not properties:
            out["additionalProperties"] = False
        # `additionalProperties: true` next to declared properties is dropped: extra keys
        # only give a small model room to ramble.
        return out


def _merge_into(target: dict[str, Any], part: dict[str, Any]) -> None:
    """Merge one `allOf` part into `target` (properties and required are unioned)."""
    for key, value in part.items():
        if key == "properties" and isinstance(target.get(key), dict):
            target[key] = {**target[key], **value}
        elif key == "required" and isinstance(target.get(key), list):
            target[key] = list(dict.fromkeys([*target[key], *value]))
        else:
            target.setdefault(key, value)


def _infer_type(node: dict[str, Any]) -> str | None:
    """Guess the type of a schema that names none, from the keywords it uses."""
    if "properties" in node or "additionalProperties" in node:
        return "object"
    if "items" in node or "prefixItems" in node:
        return "array"
    if {"maxLength", "minLength", "pattern"} & node.keys():
        return "string"
    return None


def _integer(node: dict[str, Any]) -> dict[str, Any]:
    """A small closed range becomes an enum; otherwise a plain integer (bounded digits)."""
    low: int | None = None
    high: int | None = None
    if isinstance(node.get("minimum"), int | float):
        low = math.ceil(node["minimum"])
    if isinstance(node.get("exclusiveMinimum"), int | float):
        low = math.floor(node["exclusiveMinimum"]) + 1
    if isinstance(node.get("maximum"), int | float):
        high = math.floor(node["maximum"])
    if isinstance(node.get("exclusiveMaximum"), int | float):
        high = math.ceil(node["exclusiveMaximum"]) - 1
    if low is not None and high is not None and 0 < high - low + 1 <= _MAX_INT_ENUM:
        return {"enum": list(range(low, high + 1))}
    return {"type": "integer"}
