"""Grammars for the embedded model hold any text and are checked before sampling.

Issue 15: llama-cpp-python's converter escaped `"` but not `\\` in enum values, so a context
sentence such as `hasattr(sys, "real_prefix")` made a grammar llama.cpp could not parse, and
sampling under that (NULL) grammar killed the process with SIGSEGV. These tests need
llama-cpp-python (llama.cpp's own parser runs in process; no model is loaded).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.messages import HumanMessage
from pydantic import BaseModel

pytest.importorskip("llama_cpp")

from personagen.errors import LLMError, StructuredOutputError  # noqa: E402
from personagen.llm import embedded  # noqa: E402
from personagen.llm._grammar import (  # noqa: E402
    GrammarError,
    check_grammar,
    gbnf_literal,
    json_text,
    producible_bytes,
    schema_to_gbnf,
)
from personagen.llm._schema import bound_schema  # noqa: E402
from personagen.llm.embedded import EmbeddedChatModel  # noqa: E402
from personagen.prompts.schemas import extractive_answer_schema  # noqa: E402

# The texts of the crash report, and others of the same kind.
REPORTED = ['hasattr(sys, "real_prefix")', r"C:\new\table", r'"\\"']
UGLY = [
    *REPORTED,
    '{"a": [1, 2]} \\" \\\\ \\u0041',
    'print("tab\\there")  # a " quote',
    'root ::= [^"\\\\] | x{0,3} (a)* <[1]> ::= \\x41',
    "line one\nline two\r\n\tindented",
    "nul \x00 bell \x07 del \x7f c1 \x85",
    "caf\u00e9 \u65e5\u672c\u8a9e \u0645\u0631\u062d\u0628\u0627 \u2028 \ufeff",
    "emoji \U0001f600 music \U0001d11e private \U0010fffd",
    "lone \ud800 surrogate",
    "\\",
    '"',
    "",
]

# Any code point, surrogates included (hypothesis leaves them out unless asked).
ANY_CHAR = st.characters(codec=None, exclude_categories=())
NASTY_CHAR = st.sampled_from(list('"\\{}[]()|*+?<>:=-^$.#\n\r\t\x00\x1f\x7f'))
TEXT = st.text(st.one_of(ANY_CHAR, NASTY_CHAR), max_size=80)
FAST = settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def decode_gbnf_literal(literal: str) -> str:
    """The code points llama.cpp's `parse_char` reads from a GBNF string literal."""
    assert literal[0] == literal[-1] == '"'
    body, out, i = literal[1:-1], [], 0
    while i < len(body):
        char = body[i]
        assert char != '"', f"unescaped quote ends the literal early at {i}"
        if char != "\\":
            out.append(char)
            i += 1
            continue
        kind = body[i + 1]
        width = {"x": 2, "u": 4, "U": 8}.get(kind)
        if width:
            out.append(chr(int(body[i + 2 : i + 2 + width], 16)))
            i += 2 + width
        else:
            out.append({"t": "\t", "r": "\r", "n": "\n"}.get(kind, kind))
            assert kind in 'trn\\"[]-', f"unknown escape \\{kind}"
            i += 2
    return "".join(out)


def enum_grammar(values: list[Any]) -> str:
    return schema_to_gbnf(json.dumps({"enum": values}))


# --------------------------------------------------------------------------- literals


@pytest.mark.parametrize("text", UGLY)
def test_value_round_trips_through_json_and_gbnf(text: str) -> None:
    allowed_json = decode_gbnf_literal(gbnf_literal(json_text(text)))
    assert json.loads(allowed_json) == text
    assert gbnf_literal(json_text(text)).isascii()


@FAST
@given(TEXT)
def test_any_text_round_trips(text: str) -> None:
    literal = gbnf_literal(json_text(text))
    assert literal.isascii() and literal.isprintable()
    assert json.loads(decode_gbnf_literal(literal)) == text


@FAST
@given(st.recursive(st.none() | st.booleans() | st.integers() | TEXT, st.lists, max_leaves=6))
def test_non_string_values_round_trip(value: Any) -> None:
    assert json.loads(decode_gbnf_literal(gbnf_literal(json_text(value)))) == value


def test_json_text_keeps_unicode_raw_and_escapes_only_what_json_must() -> None:
    # Raw Unicode: the model copies what it read in its prompt.
    assert json_text("caf\u00e9 \U0001f600") == '"caf\u00e9 \U0001f600"'
    assert json_text('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'
    assert json_text("x\ud800") == '"x\\ud800"'  # not encodable as UTF-8: escaped
    with pytest.raises(GrammarError, match="not JSON"):
        json_text({1, 2})


# SmolLM2-135M has no single-byte token for 0xF1/0xF2 (nor 0xC0, 0xC1, 0xF5-0xFF).
SMOLLM2_BYTES = (
    frozenset(range(256))
    - {0x04, 0x06, 0x13, 0x14, 0x16, 0x1D, 0xC0, 0xC1}
    - {
        0xF1,
        0xF2,
        *range(0xF5, 0x100),
    }
)


def test_characters_the_model_cannot_write_become_json_escapes() -> None:
    # U+493BB is F1 89 8E BB in UTF-8: forced raw, no token matches and llama.cpp aborts.
    assert json_text("a\U000493bb\U0001f600", SMOLLM2_BYTES) == '"a\\ud8e4\\udfbb\U0001f600"'
    assert json_text("\x7f\u00e9", frozenset(range(0x80))) == '"\x7f\\u00e9"'
    assert producible_bytes([b"a", b"ab", b"", b"\xf0"]) == frozenset({ord("a"), 0xF0})


@FAST
@given(TEXT)
def test_escaped_for_the_model_still_round_trips(text: str) -> None:
    written = json_text(text, SMOLLM2_BYTES)
    assert json.loads(written) == text
    assert all(byte in SMOLLM2_BYTES for byte in written.encode("utf-8"))
    assert json.loads(decode_gbnf_literal(gbnf_literal(written))) == text


# --------------------------------------------------------------------------- grammars


@pytest.mark.parametrize("text", UGLY)
def test_enum_const_and_property_name_grammars_parse(text: str) -> None:
    check_grammar(enum_grammar([text, "plain"]))
    check_grammar(schema_to_gbnf(json.dumps({"const": text})))
    schema = {"type": "object", "properties": {text: {"type": "string", "maxLength": 5}}}
    check_grammar(schema_to_gbnf(json.dumps(schema)))


@FAST
@given(st.lists(TEXT, min_size=1, max_size=12))
def test_random_enums_make_grammars_llama_cpp_parses(values: list[str]) -> None:
    grammar = enum_grammar(values)
    check_grammar(grammar)
    for value in values:
        assert gbnf_literal(json_text(value)) in grammar


@settings(max_examples=5, deadline=None, database=None)
@given(st.lists(st.text(st.one_of(ANY_CHAR, NASTY_CHAR), min_size=300, max_size=400), max_size=3))
def test_long_values(values: list[str]) -> None:
    check_grammar(enum_grammar([*values, "x" * 2000]))


def test_the_stock_converter_breaks_on_the_reported_text_and_the_check_catches_it() -> None:
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    stock = json_schema_to_gbnf(json.dumps({"enum": REPORTED}))
    with pytest.raises(GrammarError, match="expecting newline or end"):
        check_grammar(stock)
    check_grammar(enum_grammar(REPORTED))  # ours parses


@pytest.mark.parametrize(
    ("grammar", "match"),
    [
        ('root ::= "a" "b', "unexpected end of input"),
        ('root ::= "\\q"', "unknown escape"),
        ("root ::= other", "Undefined rule"),
        ('start ::= "a"', "'root'"),
        ('root ::= "a\x00"', "NUL"),
        ('root ::= "\ud800"', "UTF-8"),
    ],
)
def test_check_grammar_names_the_problem(
    grammar: str, match: str, capfd: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(GrammarError, match=match):
        check_grammar(grammar)
    # llama.cpp's own print (with the whole grammar) is kept off the terminal.
    assert "error parsing grammar" not in capfd.readouterr().err


def test_strict_strings_exclude_control_characters() -> None:
    grammar = schema_to_gbnf(json.dumps({"type": "string", "maxLength": 4}))
    assert 'char ::= [^"\\\\\\x7F\\x00-\\x1F]' in grammar


# --------------------------------------------------------------------------- the model


def extractive(sentences: list[str]) -> type[BaseModel]:
    return extractive_answer_schema([" ".join(sentences)])


@pytest.mark.parametrize("sentences", [REPORTED, UGLY[:9]])
def test_extractive_schema_over_ugly_sentences_builds_a_checked_grammar(
    sentences: list[str],
) -> None:
    schema = extractive([f"The code is {s} here." for s in sentences])
    structured = EmbeddedChatModel().with_structured_output(schema)  # loads no model
    response_format = structured.first.kwargs["response_format"]  # type: ignore[attr-defined]
    grammar = embedded._grammar_text(json.dumps(response_format["schema"]))
    quotes = response_format["schema"]["properties"]["quotes"]["items"]["enum"]
    assert quotes
    for quote in quotes:
        assert gbnf_literal(json_text(quote)) in grammar


@settings(max_examples=25, deadline=None, database=None)
@given(st.lists(TEXT, min_size=1, max_size=6))
def test_extractive_schema_over_random_sentences(texts: list[str]) -> None:
    schema = extractive([f"Sentence {i} says {t.replace('.', ',')}." for i, t in enumerate(texts)])
    EmbeddedChatModel().with_structured_output(schema)  # raises if the grammar is bad


@pytest.fixture
def stock_converter(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Build grammars with llama-cpp-python's own converter (the one that broke)."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    monkeypatch.setattr(embedded, "schema_to_gbnf", json_schema_to_gbnf)
    embedded._grammar_text.cache_clear()
    yield
    embedded._grammar_text.cache_clear()


@pytest.mark.usefixtures("stock_converter")
def test_a_grammar_llama_cpp_rejects_is_a_structured_output_error() -> None:
    schema = extractive([f"The code is {s} here." for s in REPORTED])
    with pytest.raises(StructuredOutputError, match="rejected the grammar") as caught:
        EmbeddedChatModel().with_structured_output(schema)
    assert caught.value.schema_name == "AnswerOut"
    response_format = {"type": "json_object", "schema": bound_schema(schema.model_json_schema())}
    with pytest.raises(StructuredOutputError, match="expecting newline or end"):
        embedded._grammar({**response_format, "name": "AnswerOut"})


class _ExplodingLlama:
    """Stands in for `llama_cpp.Llama`: the native call fails."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def tokenize(self, text: bytes, add_bos: bool, special: bool) -> list[int]:
        return [1] * 5

    def create_completion(self, prompt: str, **kwargs: Any) -> Any:
        raise self.error


class Pick(BaseModel):
    quote: Literal['say "hi" \\ bye', "other"]


@pytest.mark.parametrize("error", [RuntimeError("llama_decode returned -3"), OSError("boom")])
def test_a_native_failure_during_a_call_is_this_items_error(
    monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    shared = embedded._SharedLlama(
        llama=_ExplodingLlama(error),  # type: ignore[arg-type]
        chat_format="chatml",
        _producible=frozenset(range(256)),
    )
    monkeypatch.setattr(embedded, "_shared_llama", lambda *args: shared)
    model = EmbeddedChatModel(model_path="/nonexistent.gguf")
    with pytest.raises(StructuredOutputError, match=type(error).__name__) as caught:
        model.with_structured_output(Pick).invoke([HumanMessage("pick one")])
    assert caught.value.schema_name == "Pick"
    with pytest.raises(LLMError, match="embedded model call failed") as plain:
        model.invoke("hello")
    assert not isinstance(plain.value, StructuredOutputError)
