r"""JSON schema -> GBNF grammar for llama.cpp that holds any text, checked before sampling.

llama-cpp-python 0.3.36's converter (`llama_cpp.llama_grammar.json_schema_to_gbnf`) writes an
enum or const value as `json.dumps(value)` wrapped in a GBNF literal, escaping only `"`, CR
and LF. Every backslash in that JSON text (`\\`, `\"`, `\n`, `\uXXXX`) is then read by
llama.cpp as a GBNF escape: the value `C:\new` (JSON `"C:\\new"`) becomes the literal
`"\"C:\\new\""`, which matches `"C:\new"`, a JSON newline; and a value holding both `"` and
`\` ends the literal early, so the grammar does not parse (`expecting newline or end at
...`). llama.cpp then returns a NULL sampler, which llama-cpp-python adds to its sampler
chain unchecked: the process dies with SIGSEGV at the first sampled token.

This module fixes both halves:

- `schema_to_gbnf` runs the same converter with a correct literal writer: every value is
  written as JSON (`json_text`: raw Unicode as the model reads it in its prompt, lone
  surrogates escaped so the text is valid UTF-8) and that JSON text becomes a pure-ASCII
  GBNF literal (`gbnf_literal`: `\`, `"` and every non-printable or non-ASCII character
  escaped as `\xHH`, `\uHHHH` or `\UHHHHHHHH`). Any string - quotes, backslashes, braces,
  control characters, astral characters, GBNF metacharacters - is a valid enum value, and
  the only text the grammar allows for it parses back (`json.loads`) to that value.
- Given the model's single-byte tokens (`producible_bytes`), a character the model cannot
  write is JSON-escaped too: forced by a grammar, it would leave no token allowed, and
  llama.cpp aborts the process (SIGABRT) when that happens.
- `check_grammar` parses a grammar with llama.cpp's own parser (no model needed) and raises
  `GrammarError` with the parser's message instead of returning a grammar that would crash.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = [
    "GrammarError",
    "check_grammar",
    "gbnf_literal",
    "json_text",
    "producible_bytes",
    "schema_to_gbnf",
]


class GrammarError(ValueError):
    """A schema cannot become a grammar, or llama.cpp's parser rejects the grammar."""


# llama-cpp-python's converter lets JSON strings hold raw control characters (newlines),
# which strict JSON forbids and which let a small model loop on blank lines; llama.cpp's own
# C++ converter excludes them, so do the same.
_LOOSE_CHAR = r'char ::= [^"\\] |'
_STRICT_CHAR = r'char ::= [^"\\\x7F\x00-\x1F] |'

_SURROGATE = re.compile("[\ud800-\udfff]")
_NOT_PLAIN_ASCII = re.compile("[^\x00-\x7e]")
# Printable ASCII other than the two characters GBNF literals give meaning to.
_GBNF_PLAIN = frozenset(chr(code) for code in range(0x20, 0x7F)) - {'"', "\\"}


def json_text(value: Any, producible: frozenset[int] | None = None) -> str:
    r"""Return the JSON text a grammar should allow for `value`, as one valid-UTF-8 string.

    Like `json.dumps(value, ensure_ascii=False)` (raw Unicode, so a model copies text as it
    saw it), except that a character is written as a `\uXXXX` escape (a surrogate pair above
    U+FFFF) when it is a lone surrogate, which UTF-8 cannot encode, or when the model cannot
    write it: one of its UTF-8 bytes is not in `producible`. `json.loads` of the result
    equals `value`.

    Args:
        value: Any JSON-serializable value.
        producible: The bytes the model has single-byte tokens for (see
            `producible_bytes`); None writes every encodable character raw.

    Raises:
        GrammarError: If `value` is not JSON-serializable.
    """
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise GrammarError(f"enum/const value {value!r} is not JSON: {exc}") from exc

    def escape(match: re.Match[str]) -> str:
        char = match.group()
        if not _SURROGATE.match(char):
            raw = char.encode("utf-8")
            if producible is None or all(byte in producible for byte in raw):
                return char
        code = ord(char)
        if code <= 0xFFFF:
            return f"\\u{code:04x}"
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"

    # json.dumps writes non-ASCII characters and DEL only inside strings, where an escape
    # is valid JSON for the same character.
    return _NOT_PLAIN_ASCII.sub(escape, text)


def producible_bytes(pieces: Iterable[bytes]) -> frozenset[int]:
    """The bytes a model can write one at a time: those that are a whole token's piece.

    llama.cpp's grammar follows UTF-8 across tokens, so a character whose bytes are all here
    can always be written. A character with a byte outside it (SmolLM2 has no token for the
    lead bytes 0xF1 and 0xF2 of U+40000..U+BFFFF) may have no tokens at all: forced by a
    grammar, it leaves every token rejected, and llama.cpp aborts the process.

    Args:
        pieces: The byte string of every token of the vocabulary.
    """
    return frozenset(piece[0] for piece in pieces if len(piece) == 1)


def gbnf_literal(text: str) -> str:
    r"""Return a GBNF string literal (quotes included) that matches exactly `text`.

    The literal is pure ASCII: `\` and `"` are escaped, and every other character outside
    printable ASCII is written as a code-point escape, which llama.cpp's parser reads back as
    that code point (`\x` for up to 0xFF, `\u` up to 0xFFFF, `\U` above).
    """
    parts = ['"']
    for char in text:
        code = ord(char)
        if char in _GBNF_PLAIN:
            parts.append(char)
        elif char in ('"', "\\"):
            parts.append("\\" + char)
        elif code <= 0xFF:
            parts.append(f"\\x{code:02X}")
        elif code <= 0xFFFF:
            parts.append(f"\\u{code:04X}")
        else:
            parts.append(f"\\U{code:08X}")
    parts.append('"')
    return "".join(parts)


@functools.cache
def _converter_class() -> type:
    """llama-cpp-python's `SchemaConverter`, subclassed with a correct literal writer."""
    from llama_cpp.llama_grammar import SchemaConverter

    class _Converter(SchemaConverter):
        # Property names go through _format_literal(json.dumps(name)) (pure ASCII), constants
        # and enum values through _generate_constant_rule: both now escape every backslash.
        producible: frozenset[int] | None = None

        def _format_literal(self, literal: str) -> str:
            return gbnf_literal(literal)

        def _generate_constant_rule(self, value: Any) -> str:
            return gbnf_literal(json_text(value, self.producible))

    return _Converter


def schema_to_gbnf(schema_json: str, producible: frozenset[int] | None = None) -> str:
    """Turn a JSON schema (as JSON text) into a GBNF grammar whose root rule is `root`.

    Same rules as llama-cpp-python's `json_schema_to_gbnf` (object keys in schema order,
    bounded strings and arrays, one optional space between tokens), with enum, const and
    property-name literals written by `gbnf_literal` (values by `json_text` with
    `producible`) and control characters excluded from free strings.

    Raises:
        GrammarError: If the converter cannot handle the schema.
    """
    try:
        schema = json.loads(schema_json)
        converter = _converter_class()(
            prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False
        )
        converter.producible = producible
        schema = converter.resolve_refs(schema, "stdin")
        converter.visit(schema, "")
        gbnf: str = converter.format_grammar()
    except (AssertionError, ValueError, KeyError, TypeError, RecursionError) as exc:
        if isinstance(exc, GrammarError):
            raise
        raise GrammarError(f"llama.cpp cannot turn this JSON schema into a grammar: {exc}") from exc
    return gbnf.replace(_LOOSE_CHAR, _STRICT_CHAR)


# fd 2 is process-wide: one check at a time captures it.
_check_lock = threading.Lock()
_PARSE_ERROR = re.compile(r"error parsing grammar: ([^\n]*)")


def check_grammar(grammar: str, root: str = "root") -> None:
    """Parse `grammar` with llama.cpp's own parser; raise instead of returning a bad grammar.

    llama.cpp reports a parse error by printing it (with the whole grammar) to stderr and
    returning NULL, and llama-cpp-python adds that NULL to its sampler chain unchecked, which
    segfaults at the first token. Parsing first, in this process, is safe: the parser catches
    its own errors, and without a vocabulary it needs no model. Its stderr output is captured
    so that the error names the parser's complaint and no grammar is dumped on the terminal.

    Args:
        grammar: GBNF text.
        root: The start rule.

    Raises:
        GrammarError: If the text is not valid UTF-8 or llama.cpp rejects the grammar.
    """
    try:
        encoded = grammar.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise GrammarError(f"grammar is not valid UTF-8: {exc}") from exc
    if b"\x00" in encoded:
        # C reads the text up to the first NUL: the grammar llama.cpp sees would be cut short.
        raise GrammarError("grammar contains a NUL character")
    if not re.search(rf"(?m)^\s*{re.escape(root)}\s*::=", grammar):
        # Said here: llama.cpp reports this through its log, which a loaded model silences.
        raise GrammarError(f"llama.cpp rejected the grammar: it has no '{root}' rule")
    import llama_cpp

    with _check_lock, _captured_stderr() as captured:
        sampler = llama_cpp.llama_sampler_init_grammar(None, encoded, root.encode("utf-8"))
        if sampler:
            llama_cpp.llama_sampler_free(sampler)
    if sampler:
        if captured.text:  # not ours (another thread wrote meanwhile): pass it on
            _write_stderr(captured.text)
        return
    found = _PARSE_ERROR.search(captured.text)
    lines = captured.text.strip().splitlines()
    detail = found.group(1).strip() if found else (lines[-1] if lines else "no reason given")
    if len(detail) > 160:  # "expecting ... at <the rest of the grammar>"
        detail = detail[:160] + "..."
    raise GrammarError(f"llama.cpp rejected the grammar: {detail}")


class _Captured:
    text: str = ""


@contextlib.contextmanager
def _captured_stderr() -> Iterator[_Captured]:
    """Capture stderr for the block: fd 2 (llama.cpp's prints) and `sys.stderr` (its log).

    llama.cpp prints parse errors to the C stderr; llama-cpp-python's log callback prints
    llama.cpp's log lines to `sys.stderr`, which may not be fd 2 (e.g. under pytest).
    """
    captured = _Captured()
    python_side = io.StringIO()
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 at all: only the Python side can be captured
        with contextlib.redirect_stderr(python_side):
            yield captured
        captured.text = python_side.getvalue()
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            with contextlib.redirect_stderr(python_side):
                yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            native = sink.read().decode("utf-8", "replace")
            captured.text = native + python_side.getvalue()


def _write_stderr(text: str) -> None:
    with contextlib.suppress(Exception):
        sys.stderr.write(text)
        sys.stderr.flush()
