"""Turning raw bytes into plain text: decoding, then one extractor per document format.

The loaders decide where bytes come from; this module decides what text they hold. Every
failure is raised as `ExtractionError` carrying a reason a user can act on; the loaders add
the source reference and re-raise it as `DataSourceError`. Third-party exceptions never
escape from here.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from personagen.data._markdown import markdown_title
from personagen.state.documents import DocumentFormat

SUPPORTED_EXTENSIONS: dict[str, DocumentFormat] = {
    ".txt": "txt",
    ".md": "md",
    ".markdown": "md",
    ".rst": "rst",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".pdf": "pdf",
}
"""File extensions (lower case) the loaders pick up, and the format each one means."""

_BOMS: tuple[tuple[bytes, str], ...] = (
    # UTF-32 first: its little-endian BOM starts with the UTF-16 one.
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Browsers read these labels as windows-1252 (WHATWG Encoding), and so do we.
_LATIN1_LABELS = {"iso-8859-1", "iso8859-1", "latin-1", "latin1", "us-ascii", "ascii"}
_META_CHARSET_RE = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)
# C0 controls other than tab, newline, vertical tab, form feed, carriage return and escape.
_CONTROL_RE = re.compile("[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f]")
_SPACE_RE = re.compile(r"\s+")


class ExtractionError(Exception):
    """Bytes could not be turned into text; `reason` says why, for the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Extracted:
    """Text extracted from a document, with the title found in it."""

    text: str
    title: str | None


def normalize_newlines(text: str) -> str:
    """Turn CRLF and lone CR line endings into LF."""
    if "\r" not in text:
        return text
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _clean_title(title: str | None) -> str | None:
    if title is None:
        return None
    title = _SPACE_RE.sub(" ", title).strip()
    return title[:500] or None


def _codec_name(label: str) -> str | None:
    """The Python codec for an encoding label, or None when Python does not know it."""
    label = label.strip().lower()
    if label in _LATIN1_LABELS:
        label = "cp1252"
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None


def _reject_binary_text(text: str) -> None:
    sample = text[:65536]
    controls = len(_CONTROL_RE.findall(sample))
    if controls > 8 and controls > len(sample) // 10:
        raise ExtractionError("binary content (many control characters), not a text document")


def decode_text(data: bytes, *, encoding: str | None = None, declared: str | None = None) -> str:
    """Decode bytes to text with LF newlines.

    Args:
        data: The raw bytes.
        encoding: An encoding the user gave; used as is, and errors are fatal.
        declared: An encoding the document or server declared (HTTP charset, HTML meta); tried
            when the bytes are not UTF-8.

    Returns:
        The decoded text, without a byte order mark.

    Raises:
        ExtractionError: Unknown encoding, binary data or undecodable bytes.
    """
    if encoding:
        codec = _codec_name(encoding)
        if codec is None:
            raise ExtractionError(f"unknown encoding {encoding!r}")
        try:
            text = data.decode(codec)
        except UnicodeDecodeError as exc:
            raise ExtractionError(
                f"undecodable bytes: not valid {encoding} (byte {exc.start}: {exc.reason})"
            ) from None
        except UnicodeError as exc:
            raise ExtractionError(f"undecodable bytes: not valid {encoding} ({exc})") from None
    else:
        text = _decode_detected(data, declared)
    text = text.removeprefix("\ufeff")
    _reject_binary_text(text)
    return normalize_newlines(text)


def _decode_detected(data: bytes, declared: str | None) -> str:
    for bom, codec in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(codec)
            except UnicodeDecodeError as exc:
                raise ExtractionError(
                    f"undecodable bytes: starts with a {codec} byte order mark but is not "
                    f"valid {codec} (byte {exc.start})"
                ) from None
    if b"\x00" in data:
        raise ExtractionError("binary file (contains NUL bytes), not a text document")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    if declared and (declared_codec := _codec_name(declared)):
        try:
            return data.decode(declared_codec)
        except UnicodeDecodeError:
            pass  # A wrong declaration is common; detection below may still succeed.
    from charset_normalizer import from_bytes

    matches = from_bytes(data)
    best = matches.best()
    if best is None:
        raise ExtractionError(
            "undecodable bytes: not valid UTF-8 and no known text encoding fits "
            "(set 'encoding' if you know it)"
        )
    # On short Western European texts charset_normalizer often ranks cp1250 or a Mac code
    # page above windows-1252, garbling accents. windows-1252 is by far the most common
    # legacy encoding, so it wins whenever it decodes about as cleanly as the best guess.
    for match in matches:
        if "cp1252" in match.could_be_from_charset and match.chaos <= best.chaos + 0.1:
            try:
                return data.decode("cp1252")
            except UnicodeDecodeError:
                break
    return str(best)


def extract(
    data: bytes,
    fmt: DocumentFormat,
    *,
    encoding: str | None = None,
    declared_encoding: str | None = None,
    fields: Sequence[str] = (),
) -> Extracted:
    """Extract the text of a document.

    Args:
        data: The raw bytes of the document.
        fmt: Its format.
        encoding: Text encoding given by the user (not used for PDF).
        declared_encoding: Encoding declared by a server (the HTTP charset), if any.
        fields: JSON/JSONL fields or CSV columns holding the text; all when empty.

    Returns:
        The text (never blank) and the title found in the document.

    Raises:
        ExtractionError: The document cannot be read or holds no text.
    """
    if not data:
        raise ExtractionError("empty file (0 bytes)")
    title: str | None = None
    if fmt == "pdf":
        text, title = _extract_pdf(data)
    else:
        if fmt == "html" and not declared_encoding:
            meta = _META_CHARSET_RE.search(data[:4096])
            declared_encoding = meta.group(1).decode("ascii") if meta else None
        decoded = decode_text(data, encoding=encoding, declared=declared_encoding)
        if fmt == "html":
            text, title = _extract_html(decoded)
        elif fmt == "json":
            text = _extract_json(decoded, fields)
        elif fmt == "jsonl":
            text = _extract_jsonl(decoded, fields)
        elif fmt == "csv":
            text = _extract_csv(decoded, fields)
        else:
            text = decoded
            if fmt == "md":
                title = markdown_title(text)
    # Values inside JSON, CSV or PDF text can still carry CR line endings of their own.
    text = normalize_newlines(text)
    if not text.strip():
        raise ExtractionError(f"no text left after extracting {fmt} (empty document)")
    return Extracted(text=text, title=_clean_title(title))


# --- HTML -----------------------------------------------------------------------------------

_HTML_DROP = frozenset(
    {"script", "style", "nav", "footer", "noscript", "template", "svg", "iframe", "head"}
    | {"object", "embed", "canvas", "button", "select", "option"}
)
_HTML_BLOCKS = frozenset(
    {"address", "article", "aside", "blockquote", "body", "caption", "dd", "details"}
    | {"dialog", "div", "dl", "dt", "fieldset", "figcaption", "figure", "form", "header"}
    | {"h1", "h2", "h3", "h4", "h5", "h6", "hgroup", "hr", "html", "legend", "li", "main"}
    | {"menu", "ol", "p", "section", "summary", "table", "tbody", "tfoot", "thead", "tr"}
    | {"ul", "center"}
)
_END_BLOCK = object()


def _extract_html(markup: str) -> tuple[str, str | None]:
    from bs4 import (
        BeautifulSoup,
        Comment,
        Declaration,
        Doctype,
        MarkupResemblesLocatorWarning,
        NavigableString,
        ProcessingInstruction,
        Tag,
        XMLParsedAsHTMLWarning,
    )

    skipped_strings = (Comment, Declaration, Doctype, ProcessingInstruction)
    try:
        with warnings.catch_warnings():
            # XHTML and URL-like inputs are fine to parse as HTML; the warnings are noise.
            warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
            warnings.simplefilter("ignore", MarkupResemblesLocatorWarning)
            soup = BeautifulSoup(markup, "lxml")
    except Exception as exc:  # lxml/bs4 raise assorted types on pathological markup
        raise ExtractionError(f"cannot parse HTML: {type(exc).__name__}: {exc}") from None

    title: str | None = None
    if soup.title is not None:
        title = soup.title.get_text()
    if not (title and title.strip()):
        heading = soup.find("h1")
        title = heading.get_text() if heading is not None else None

    blocks: list[str] = []
    line: list[str] = []
    cell_open = False

    def flush() -> None:
        nonlocal cell_open
        cell_open = False
        if not line:
            return
        raw = "".join(line)
        line.clear()
        lines = (" ".join(part.split()) for part in raw.split("\n"))
        block = "\n".join(part for part in lines if part)
        if block:
            blocks.append(block)

    # An explicit stack instead of recursion: real-world HTML can nest deeper than Python's
    # recursion limit.
    stack: list[Any] = list(reversed(soup.contents))
    while stack:
        node = stack.pop()
        if node is _END_BLOCK:
            flush()
            continue
        if isinstance(node, NavigableString):
            if not isinstance(node, skipped_strings):
                line.append(_SPACE_RE.sub(" ", str(node)))
            continue
        if not isinstance(node, Tag):
            continue
        name = (node.name or "").lower()
        if name in _HTML_DROP or node.has_attr("hidden"):
            continue
        if name == "br":
            line.append("\n")
            continue
        if name == "pre":
            flush()
            pre = normalize_newlines(node.get_text()).strip("\n")
            if pre.strip():
                blocks.append("\n".join(part.rstrip() for part in pre.split("\n")))
            continue
        if name in ("td", "th"):
            # Cells of one row stay on one line, separated so their words do not merge.
            if cell_open:
                line.append(" | ")
            cell_open = True
        if name in _HTML_BLOCKS:
            flush()
            stack.append(_END_BLOCK)
        stack.extend(reversed(node.contents))
    flush()
    return "\n\n".join(blocks), title


# --- PDF ------------------------------------------------------------------------------------


def _extract_pdf(data: bytes) -> tuple[str, str | None]:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError

    if b"%PDF-" not in data[:1024]:
        raise ExtractionError("not a PDF file (no %PDF- header)")
    encrypted = "PDF is encrypted and needs a password; decrypt it first"
    pages: list[str] = []
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                # Many PDFs are encrypted with an empty user password (owner password only).
                if not reader.decrypt(""):
                    raise ExtractionError(encrypted)
            except (DependencyError, NotImplementedError):
                raise ExtractionError(
                    f"{encrypted} (its cipher needs the 'cryptography' package)"
                ) from None
        for number, page in enumerate(reader.pages, start=1):
            try:
                pages.append(page.extract_text() or "")
            except FileNotDecryptedError:
                raise ExtractionError(encrypted) from None
            except Exception as exc:  # pypdf raises many types on malformed content streams
                raise ExtractionError(
                    f"cannot extract text from PDF page {number}: {type(exc).__name__}: {exc}"
                ) from None
        title = _pdf_title(reader)
    except ExtractionError:
        raise
    except FileNotDecryptedError:
        raise ExtractionError(encrypted) from None
    except Exception as exc:  # malformed PDFs surface as PdfReadError, KeyError, ValueError...
        raise ExtractionError(f"not a readable PDF: {type(exc).__name__}: {exc}") from None
    texts = (normalize_newlines(page.replace("\x00", "")).strip() for page in pages)
    text = "\n\n".join(page for page in texts if page)
    if not text:
        raise ExtractionError(
            f"PDF has no extractable text ({len(pages)} page(s); scanned or image-only?)"
        )
    return text, title


def _pdf_title(reader: Any) -> str | None:
    try:
        metadata = reader.metadata
        title = metadata.title if metadata is not None else None
    except Exception:  # broken metadata must not cost us the text
        return None
    return str(title) if title else None


# --- JSON and JSONL -------------------------------------------------------------------------


def _strings(value: Any) -> Iterator[str]:
    """All non-blank strings inside a JSON value, in document order."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if item.strip():
                yield item.strip()
        elif isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            stack.extend(reversed(item))


def _field_values(value: Any, path: str) -> list[Any]:
    """Values at a dotted path; lists on the way are walked item by item.

    A key that itself contains dots is matched before the path is split at a dot.
    """
    if isinstance(value, list):
        return [found for item in value for found in _field_values(item, path)]
    if not isinstance(value, dict):
        return []
    if path in value:
        return [value[path]]
    # Try the longest key prefix first so {"a.b": {"c": ..}} matches "a.b.c".
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        key = ".".join(parts[:cut])
        if key in value:
            return _field_values(value[key], ".".join(parts[cut:]))
    return []


def _render_value(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, int | float):
        return [str(value)]
    return list(_strings(value))


class _Records:
    """Collects the text of JSON records and remembers which fields were ever found."""

    def __init__(self, fields: Sequence[str]) -> None:
        self.fields = list(fields)
        self.found: set[str] = set()
        self.parts: list[str] = []

    def add(self, record: Any) -> None:
        if not self.fields:
            self.parts.extend(_strings(record))
            return
        records = record if isinstance(record, list) else [record]
        for item in records:
            for field in self.fields:
                values = _field_values(item, field)
                if values:
                    self.found.add(field)
                for value in values:
                    self.parts.extend(_render_value(value))

    def text(self) -> str:
        if self.fields and not self.found:
            names = ", ".join(repr(field) for field in self.fields)
            raise ExtractionError(f"none of the fields {names} found in any record")
        return "\n\n".join(self.parts)


def _json_error(exc: json.JSONDecodeError) -> str:
    return f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"


def _extract_json(text: str, fields: Sequence[str]) -> str:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ExtractionError(_json_error(exc)) from None
    except RecursionError:
        raise ExtractionError("invalid JSON: nested too deeply") from None
    records = _Records(fields)
    records.add(value)
    return records.text()


def _extract_jsonl(text: str, fields: Sequence[str]) -> str:
    records = _Records(fields)
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ExtractionError(
                f"invalid JSON on line {number} (column {exc.colno}): {exc.msg}"
            ) from None
        except RecursionError:
            raise ExtractionError(f"invalid JSON on line {number}: nested too deeply") from None
        records.add(value)
    return records.text()


# --- CSV ------------------------------------------------------------------------------------


def _csv_delimiter(header_line: str) -> str:
    # csv.Sniffer misreads quoted prose; counting candidates in the header line is steadier.
    counts = {delimiter: header_line.count(delimiter) for delimiter in (",", ";", "\t", "|")}
    best = max(counts, key=lambda delimiter: counts[delimiter])
    return best if counts[best] else ","


def _extract_csv(text: str, fields: Sequence[str]) -> str:
    # The default limit (128 KiB per field) rejects long text cells; the document as a whole
    # is already bounded by max_bytes. The limit is process-wide and only ever raised here.
    if csv.field_size_limit() < len(text):
        csv.field_size_limit(len(text))
    reader = csv.reader(io.StringIO(text), delimiter=_csv_delimiter(text.split("\n", 1)[0]))
    try:
        header = next(reader, None)
        if header is None:
            raise ExtractionError("CSV has no header row")
        names = [name.strip() or f"column {index + 1}" for index, name in enumerate(header)]
        if fields:
            missing = [field for field in fields if field not in names]
            if missing:
                raise ExtractionError(
                    "CSV has no column "
                    + ", ".join(repr(field) for field in missing)
                    + f" (columns: {', '.join(names)})"
                )
            # In the order the fields were asked for; a repeated header name yields every column.
            selected = list(
                dict.fromkeys(
                    (index, name)
                    for field in fields
                    for index, name in enumerate(names)
                    if name == field
                )
            )
        else:
            selected = list(enumerate(names))
        rows: list[str] = []
        for row in reader:
            lines = [
                f"{name}: {row[index].strip()}"
                for index, name in selected
                if index < len(row) and row[index].strip()
            ]
            if not fields:
                # Cells beyond the header still hold text; name them by position.
                lines += [
                    f"column {index + 1}: {cell.strip()}"
                    for index, cell in enumerate(row[len(names) :], start=len(names))
                    if cell.strip()
                ]
            if lines:
                rows.append("\n".join(lines))
    except csv.Error as exc:
        raise ExtractionError(f"malformed CSV on line {reader.line_num}: {exc}") from None
    return "\n\n".join(rows)
