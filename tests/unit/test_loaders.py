"""Loaders: every format, directories and globs, URLs through httpx.MockTransport, failures."""

from __future__ import annotations

import codecs
import hashlib
import io
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

from personagen.data import load_source, load_sources
from personagen.errors import DataSourceError
from personagen.state.spec import DataSource

pytestmark = pytest.mark.disable_socket

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "loaders"


def source(value: str | dict) -> DataSource:
    return DataSource.model_validate(value)


def load(value: str | dict, base_dir: Path = FIXTURES, **kwargs):
    return load_source(source(value), base_dir=base_dir, **kwargs)


def load_error(value: str | dict, base_dir: Path = FIXTURES, **kwargs) -> DataSourceError:
    with pytest.raises(DataSourceError) as info:
        load(value, base_dir, **kwargs)
    return info.value


def make_pdf(
    pages: list[str], *, user_password: str | None = None, title: str | None = None
) -> bytes:
    """A small PDF with one line of Helvetica text per page ("" gives a blank page)."""
    writer = PdfWriter()
    for text in pages:
        page = writer.add_blank_page(width=612, height=792)
        if text:
            font = DictionaryObject(
                {
                    NameObject("/Type"): NameObject("/Font"),
                    NameObject("/Subtype"): NameObject("/Type1"),
                    NameObject("/BaseFont"): NameObject("/Helvetica"),
                }
            )
            page[NameObject("/Resources")] = DictionaryObject(
                {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})}
            )
            stream = DecodedStreamObject()
            stream.set_data(f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode("latin-1"))
            page.replace_contents(stream)
    if title:
        writer.add_metadata({"/Title": title})
    if user_password is not None:
        # RC4 needs no extra dependency (AES would need the cryptography package).
        writer.encrypt(user_password=user_password, owner_password="owner", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


# --- formats --------------------------------------------------------------------------------


def test_txt_loads_as_is_with_ref_fields():
    [doc] = load("plain.txt")
    raw = (FIXTURES / "plain.txt").read_bytes()
    assert doc.text == raw.decode()
    assert doc.ref.id == hashlib.sha256(raw).hexdigest()
    assert doc.ref.source == str(FIXTURES / "plain.txt")
    assert doc.ref.kind == "file"
    assert doc.ref.format == "txt"
    assert doc.ref.bytes == len(raw)
    assert doc.ref.chars == len(doc.text)
    assert doc.ref.title is None


def test_markdown_title_skips_front_matter_and_code_fences():
    [doc] = load("notes.md")
    assert doc.ref.format == "md"
    assert doc.ref.title == "Buying a First Home"
    assert "# not a heading" in doc.text


def test_markdown_without_h1_has_no_title(tmp_path):
    write(tmp_path / "a.markdown", "## Only a subheading\n\ntext\n")
    [doc] = load("a.markdown", tmp_path)
    assert doc.ref.format == "md"
    assert doc.ref.title is None


def test_setext_h1_is_a_title(tmp_path):
    write(tmp_path / "a.md", "Big Title\n=========\n\nbody\n")
    assert load("a.md", tmp_path)[0].ref.title == "Big Title"


def test_rst_loads_as_is():
    [doc] = load("guide.rst")
    assert doc.ref.format == "rst"
    assert doc.text.startswith("Heating guide\n=====")


def test_html_extraction_drops_boilerplate_and_keeps_blocks():
    [doc] = load("page.html")
    assert doc.ref.format == "html"
    assert doc.ref.title == "Nurse Shift Guide"
    text = doc.text
    for dropped in ("tracking", "color: red", "navigation", "comment", "noscript", "footer"):
        assert dropped not in text
    assert "hidden text" not in text
    assert "Night shifts\n\nSleep before the first night shift.\n\n" in text
    assert "Line one\nLine two" in text
    assert "Eat a light meal\n\nDrink water" in text
    assert "Night | 12" in text
    assert "code   keeps\n  its spacing" in text


def test_html_title_falls_back_to_h1(tmp_path):
    write(tmp_path / "p.htm", "<html><body><h1>Heading One</h1><p>Body.</p></body></html>")
    [doc] = load("p.htm", tmp_path)
    assert doc.ref.title == "Heading One"
    assert doc.text == "Heading One\n\nBody."


def test_html_meta_charset_is_honoured(tmp_path):
    html = '<html><head><meta charset="windows-1252"><title>Caf\xe9</title></head>'
    html += "<body><p>Cr\xe8me br\xfbl\xe9e \u20ac 5</p></body></html>"
    write(tmp_path / "p.html", html.encode("cp1252"))
    [doc] = load("p.html", tmp_path)
    assert doc.ref.title == "Café"
    assert doc.text == "Crème brûlée € 5"


def test_deeply_nested_html_does_not_overflow(tmp_path):
    write(tmp_path / "deep.html", "<div>" * 5000 + "deep text" + "</div>" * 5000)
    assert load("deep.html", tmp_path)[0].text == "deep text"


def test_json_all_strings_by_default():
    [doc] = load("items.json")
    assert doc.text == (
        "Deposit\n\nSave ten percent.\n\nAna\n\nmoney\n\nSurvey\n\nAlways get a survey.\n\nBen"
    )


def test_json_fields_with_nested_paths():
    [doc] = load({"path": "items.json", "fields": ["body", "meta.author"]})
    assert doc.text == "Save ten percent.\n\nAna\n\nAlways get a survey.\n\nBen"


def test_json_single_object_lists_on_path_and_dotted_keys(tmp_path):
    data = {
        "posts": [{"text": "one", "n": 3}, {"text": "two", "n": 4.5}],
        "a.b": {"c": "dotted key"},
        "flag": True,
    }
    write(tmp_path / "o.json", json.dumps(data))
    [doc] = load({"path": "o.json", "fields": ["posts.text", "posts.n", "a.b.c", "flag"]}, tmp_path)
    assert doc.text == "one\n\ntwo\n\n3\n\n4.5\n\ndotted key\n\ntrue"


def test_jsonl_all_strings_and_fields():
    [doc] = load("records.jsonl")
    assert doc.ref.format == "jsonl"
    assert "What is a deposit?\n\nMoney paid up front.\n\nen" in doc.text
    [doc] = load({"path": "records.jsonl", "fields": ["answer"]})
    assert doc.text == "Money paid up front.\n\nAn inspection of the house."


def test_csv_rows_as_column_value_lines():
    [doc] = load("table.csv")
    assert doc.text == (
        "name: Ana\nrole: nurse\nnotes: Works nights, likes quiet\n\nname: Ben\nrole: teacher"
    )


def test_csv_selected_fields_in_requested_order():
    [doc] = load({"path": "table.csv", "fields": ["notes", "name"]})
    assert doc.text == "notes: Works nights, likes quiet\nname: Ana\n\nname: Ben"


def test_csv_semicolon_delimiter_and_long_cells(tmp_path):
    long_cell = "word " * 40_000  # over csv's default 128 KiB field limit
    write(tmp_path / "t.csv", f'a;b\n1;"{long_cell}"\n')
    [doc] = load("t.csv", tmp_path)
    assert doc.text.startswith("a: 1\nb: word word")


def test_pdf_pages_joined_with_blank_lines_and_metadata_title(tmp_path):
    write(tmp_path / "doc.pdf", make_pdf(["Hello PDF world", "", "Third page"], title="Manual"))
    [doc] = load("doc.pdf", tmp_path)
    assert doc.ref.format == "pdf"
    assert doc.text == "Hello PDF world\n\nThird page"
    assert doc.ref.title == "Manual"


def test_pdf_encrypted_with_empty_user_password_is_read(tmp_path):
    write(tmp_path / "owner-only.pdf", make_pdf(["Readable"], user_password=""))
    assert load("owner-only.pdf", tmp_path)[0].text == "Readable"


def test_format_override_beats_extension(tmp_path):
    write(tmp_path / "data.txt", '{"text": "from json"}')
    [doc] = load({"path": "data.txt", "format": "json"}, tmp_path)
    assert doc.ref.format == "json"
    assert doc.text == "from json"


# --- decoding -------------------------------------------------------------------------------


def test_utf8_bom_and_crlf_are_normalised(tmp_path):
    write(tmp_path / "bom.txt", codecs.BOM_UTF8 + b"line one\r\nline two\rline three\r\n")
    [doc] = load("bom.txt", tmp_path)
    assert doc.text == "line one\nline two\nline three\n"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
def test_utf16_and_utf32_with_bom(tmp_path, encoding):
    write(tmp_path / "wide.txt", "größe ünd weiß".encode(encoding))  # the codec writes a BOM
    assert load("wide.txt", tmp_path)[0].text == "größe ünd weiß"


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("Le café était très animé. Les élèves étudiaient à côté de la fenêtre. " * 5, "cp1252"),
        ("Größere Häuser kosten mehr. Die Überweisung dauert zwei Tage. " * 3, "cp1252"),
        ("He said \u201chello\u201d \u2014 and left. It cost \u20ac5. ", "cp1252"),
        ("Привет, мир! Это тестовый документ на русском языке. " * 3, "cp1251"),
        ("Tyto řádky jsou česky. Žluťoučký kůň úpěl ďábelské ódy. " * 3, "cp1250"),
        ("これは日本語のテキストです。東京は大きい都市です。" * 3, "shift_jis"),
    ],
)
def test_legacy_encoding_is_detected(tmp_path, text, encoding):
    write(tmp_path / "legacy.txt", text.encode(encoding))
    assert load("legacy.txt", tmp_path)[0].text == text


def test_explicit_encoding(tmp_path):
    write(tmp_path / "k.txt", "привет мир".encode("koi8-r"))
    assert load({"path": "k.txt", "encoding": "koi8-r"}, tmp_path)[0].text == "привет мир"


# --- directories, globs, excludes -----------------------------------------------------------


def test_directory_is_recursive_sorted_and_skips_hidden_and_unsupported():
    docs = load("docs")
    assert [Path(doc.ref.source).relative_to(FIXTURES).as_posix() for doc in docs] == [
        "docs/a.md",
        "docs/drafts/d.md",
        "docs/sub/b.txt",
    ]


@pytest.mark.parametrize(
    "exclude", [["drafts"], ["drafts/**"], ["docs/drafts/*"], ["**/d.md"], ["d.*"]]
)
def test_exclude_patterns(exclude):
    docs = load({"path": "docs", "exclude": exclude})
    assert [Path(doc.ref.source).name for doc in docs] == ["a.md", "b.txt"]


def test_recursive_glob():
    docs = load("docs/**/*.md")
    assert [Path(doc.ref.source).name for doc in docs] == ["a.md", "d.md"]


def test_absolute_glob_and_exclude():
    docs = load({"path": str(FIXTURES / "docs" / "**" / "*"), "exclude": ["*.md"]})
    assert [Path(doc.ref.source).name for doc in docs] == ["b.txt"]


def test_glob_skips_unsupported_files():
    docs = load("docs/*")
    assert [Path(doc.ref.source).name for doc in docs] == ["a.md"]


def test_base_dir_with_glob_characters(tmp_path):
    base = tmp_path / "odd[dir]"
    write(base / "x.txt", "inside odd dir")
    assert load("*.txt", base)[0].text == "inside odd dir"


def test_existing_name_with_glob_characters_is_a_path(tmp_path):
    write(tmp_path / "notes[1].txt", "bracketed")
    assert load("notes[1].txt", tmp_path)[0].text == "bracketed"


def test_directory_with_format_reads_every_file(tmp_path):
    write(tmp_path / "logs" / "app.log", "log line")
    [doc] = load({"path": "logs", "format": "txt"}, tmp_path)
    assert doc.text == "log line"


def test_home_expansion(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    write(tmp_path / "h.txt", "home text")
    assert load("~/h.txt", FIXTURES)[0].text == "home text"


# --- inline and load_sources ----------------------------------------------------------------


def test_inline_text_names():
    docs = load_sources(
        [
            source({"text": "first inline"}),
            source({"text": "named inline", "name": "notes"}),
            source({"text": "third inline"}),
        ]
    )
    assert [doc.ref.source for doc in docs] == ["inline:text-1", "inline:notes", "inline:text-3"]
    assert all(doc.ref.kind == "inline" and doc.ref.format == "txt" for doc in docs)
    assert docs[0].ref.id == hashlib.sha256(b"first inline").hexdigest()


def test_inline_with_format():
    [doc] = load_source(source({"text": "<p>Hi <b>there</b></p>", "format": "html"}))
    assert doc.text == "Hi there"
    assert doc.ref.source == "inline:text-1"


def test_load_sources_dedupes_same_bytes():
    docs = load_sources(
        [source("plain.txt"), source("docs"), source("docs/**/*.md"), source("plain.txt")],
        base_dir=FIXTURES,
    )
    assert [Path(doc.ref.source).name for doc in docs] == ["plain.txt", "a.md", "d.md", "b.txt"]
    assert len({doc.ref.id for doc in docs}) == len(docs)


def test_inline_same_as_file_is_kept_once(tmp_path):
    write(tmp_path / "same.txt", "identical bytes")
    docs = load_sources(
        [source("same.txt"), source({"text": "identical bytes"})], base_dir=tmp_path
    )
    assert len(docs) == 1
    assert docs[0].ref.kind == "file"


# --- local failures -------------------------------------------------------------------------


def test_missing_path():
    error = load_error("no/such/file.txt")
    assert error.source == "no/such/file.txt"
    assert "path not found" in error.reason
    assert str(FIXTURES / "no/such/file.txt") in error.reason


def test_glob_matching_nothing():
    assert load_error("docs/**/*.nothing").reason == "glob matched no files"


def test_glob_matching_only_unsupported():
    assert "none with a supported extension" in load_error("docs/*.docx").reason


def test_directory_without_supported_files(tmp_path):
    write(tmp_path / "d" / "image.png", b"\x89PNG")
    assert "directory has no supported files" in load_error("d", tmp_path).reason
    (tmp_path / "empty").mkdir()
    assert "directory has no supported files" in load_error("empty", tmp_path).reason


def test_everything_excluded():
    assert "excluded by 'exclude'" in load_error({"path": "docs", "exclude": ["**"]}).reason
    assert "excluded" in load_error({"path": "plain.txt", "exclude": ["*.txt"]}).reason


def test_unsupported_extension():
    error = load_error("docs/notes.docx")
    assert error.source == str(FIXTURES / "docs" / "notes.docx")
    assert "unsupported extension '.docx'" in error.reason
    assert "set 'format'" in error.reason


def test_too_large_local_file(tmp_path):
    write(tmp_path / "big.txt", "x" * 2000)
    assert "too large" in load_error({"path": "big.txt", "max_bytes": 1000}, tmp_path).reason


def test_not_a_regular_file(tmp_path):
    import os

    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    assert load_error("pipe.txt", tmp_path).reason == "not a regular file"


def test_file_without_extension(tmp_path):
    write(tmp_path / "README", "readme text")
    assert "no file extension" in load_error("README", tmp_path).reason
    assert load({"path": "README", "format": "md"}, tmp_path)[0].text == "readme text"


@pytest.mark.parametrize("name", ["a" * 5000 + ".txt", "nul\x00byte.txt"])
def test_invalid_path_strings(tmp_path, name):
    error = load_error(name, tmp_path)
    assert "invalid path" in error.reason or "path not found" in error.reason


def test_json_values_with_crlf_are_normalised():
    [doc] = load_source(source({"text": '{"a": "x\\r\\ny\\rz"}', "format": "json"}))
    assert doc.text == "x\ny\nz"


def test_unreadable_file(tmp_path):
    import os

    if os.geteuid() == 0:
        pytest.skip("root can read any file")
    path = write(tmp_path / "locked.txt", "secret")
    path.chmod(0)
    try:
        assert load_error("locked.txt", tmp_path).reason == "permission denied"
    finally:
        path.chmod(0o644)


BAD_FILES: list[tuple[str, bytes | str, dict, str]] = [
    ("empty.txt", b"", {}, "empty file (0 bytes)"),
    ("blank.md", "   \n\n\t\n", {}, "no text left after extracting md (empty document)"),
    ("nul.txt", b"text\x00with nul", {}, "binary file (contains NUL bytes)"),
    ("png.md", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", {}, "binary file"),
    ("controls.txt", bytes(range(1, 9)) * 50, {}, "binary content"),
    ("bad.txt", b"\xff\xfe\xfa" * 3 + b"\x81\x8d\x8f" * 200, {"encoding": "utf-8"}, "undecodable"),
    ("bad2.txt", b"ok", {"encoding": "no-such-codec"}, "unknown encoding 'no-such-codec'"),
    ("bad.json", '{"a": 1,\n "b": }', {}, "invalid JSON at line 2 column 7"),
    ("deep.json", "[" * 100_000 + "]" * 100_000, {}, "invalid JSON"),
    ("empty.json", "[]", {}, "no text left after extracting json"),
    ("numbers.json", "[1, 2, 3]", {}, "no text left"),
    ("fields.json", '[{"a": "x"}]', {"fields": ["b"]}, "none of the fields 'b' found"),
    ("bad.jsonl", '{"a": "ok"}\n\n{"a": broken}\n', {}, "invalid JSON on line 3 (column 7)"),
    ("fields.jsonl", '{"a": "x"}\n', {"fields": ["zzz"]}, "none of the fields 'zzz'"),
    ("header.csv", "a,b\n", {}, "no text left after extracting csv"),
    ("cols.csv", "a,b\n1,2\n", {"fields": ["c"]}, "CSV has no column 'c' (columns: a, b)"),
    ("not.pdf", "plain text", {}, "not a PDF file (no %PDF- header)"),
    ("broken.pdf", b"%PDF-1.4\n1 0 obj garbage", {}, "not a readable PDF"),
    ("script.html", "<script>only()</script>", {}, "no text left after extracting html"),
]


@pytest.mark.parametrize(
    ("name", "content", "options", "reason"), BAD_FILES, ids=[case[0] for case in BAD_FILES]
)
def test_bad_files(tmp_path, name, content, options, reason):
    path = write(tmp_path / name, content)
    error = load_error({"path": name, **options}, tmp_path)
    assert error.source == str(path)
    assert reason in error.reason
    assert str(path) in str(error)


def test_csv_sloppy_quoting_is_read_leniently(tmp_path):
    # Real-world CSV is often sloppy; an unterminated quote runs to the end, as in Excel.
    write(tmp_path / "q.csv", 'a,b\n"unterminated,2\n')
    assert load("q.csv", tmp_path)[0].text == "a: unterminated,2"


def test_image_only_pdf(tmp_path):
    write(tmp_path / "scan.pdf", make_pdf(["", ""]))
    error = load_error("scan.pdf", tmp_path)
    assert "no extractable text" in error.reason
    assert error.source == str(tmp_path / "scan.pdf")


def test_password_protected_pdf(tmp_path):
    write(tmp_path / "locked.pdf", make_pdf(["Secret"], user_password="pw"))
    assert "encrypted" in load_error("locked.pdf", tmp_path).reason


def test_inline_pdf_is_refused():
    with pytest.raises(DataSourceError, match="inline text cannot be read as pdf"):
        load_source(source({"text": "x", "format": "pdf"}))


def test_error_in_one_file_of_a_directory_names_that_file(tmp_path):
    write(tmp_path / "d" / "good.txt", "good")
    write(tmp_path / "d" / "bad.json", "{nope")
    error = load_error("d", tmp_path)
    assert error.source == str(tmp_path / "d" / "bad.json")
    assert error.reason.startswith("invalid JSON at line 1 column 2")


# --- URLs -----------------------------------------------------------------------------------

Handler = Callable[[httpx.Request], httpx.Response]


def mock_client(handler: Handler) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler))


def routes(table: dict[str, Callable[[], httpx.Response]]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        make = table.get(str(request.url))
        return make() if make else httpx.Response(404)

    return handler


def load_url(url: str, handler: Handler, **options):
    with mock_client(handler) as client:
        return load_source(source({"url": url, **options}), client=client)


def url_error(url: str, handler: Handler, **options) -> DataSourceError:
    with pytest.raises(DataSourceError) as info:
        load_url(url, handler, **options)
    assert info.value.source == url
    return info.value


def test_url_html_ok():
    body = b"<html><head><title>Remote</title></head><body><p>Remote text</p></body></html>"
    handler = routes(
        {
            "https://example.test/page": lambda: httpx.Response(
                200, content=body, headers={"content-type": "text/html; charset=utf-8"}
            )
        }
    )
    [doc] = load_url("https://example.test/page", handler)
    assert doc.text == "Remote text"
    assert doc.ref.kind == "url"
    assert doc.ref.source == "https://example.test/page"
    assert doc.ref.format == "html"
    assert doc.ref.title == "Remote"
    assert doc.ref.id == hashlib.sha256(body).hexdigest()
    assert doc.ref.bytes == len(body)


@pytest.mark.parametrize(
    ("url", "content_type", "body", "fmt", "text"),
    [
        ("https://x.test/readme.md", "text/plain", b"# Read me\n\nok", "md", "# Read me\n\nok"),
        ("https://x.test/api", "application/json", b'{"t": "json body"}', "json", "json body"),
        (
            "https://x.test/feed",
            "application/x-ndjson",
            b'{"t": "a"}\n{"t": "b"}',
            "jsonl",
            "a\n\nb",
        ),
        ("https://x.test/data", "text/csv", b"k,v\n1,2\n", "csv", "k: 1\nv: 2"),
        ("https://x.test/x", "application/xhtml+xml", b"<p>xhtml</p>", "html", "xhtml"),
        (
            "https://x.test/raw",
            "text/plain; charset=iso-8859-1",
            "café".encode("cp1252"),
            "txt",
            "café",
        ),
        ("https://x.test/file.md", "application/octet-stream", b"# Octet", "md", "# Octet"),
    ],
)
def test_url_formats(url, content_type, body, fmt, text):
    handler = routes(
        {url: lambda: httpx.Response(200, content=body, headers={"content-type": content_type})}
    )
    [doc] = load_url(url, handler)
    assert doc.ref.format == fmt
    assert doc.text == text


def test_url_pdf():
    body = make_pdf(["Remote PDF"])
    url = "https://x.test/doc"
    handler = routes(
        {
            url: lambda: httpx.Response(
                200, content=body, headers={"content-type": "application/pdf"}
            )
        }
    )
    assert load_url(url, handler)[0].text == "Remote PDF"


def test_url_format_override():
    url = "https://x.test/blob"
    handler = routes(
        {
            url: lambda: httpx.Response(
                200, content=b'{"a": "b"}', headers={"content-type": "application/octet-stream"}
            )
        }
    )
    assert load_url(url, handler, format="json")[0].text == "b"


def test_url_redirects_are_followed():
    handler = routes(
        {
            "https://x.test/old": lambda: httpx.Response(301, headers={"location": "/mid"}),
            "https://x.test/mid": lambda: httpx.Response(
                302, headers={"location": "https://y.test/new.md"}
            ),
            "https://y.test/new.md": lambda: httpx.Response(
                200, content=b"# New\n\nmoved", headers={"content-type": "text/plain"}
            ),
        }
    )
    [doc] = load_url("https://x.test/old", handler)
    assert doc.text == "# New\n\nmoved"
    assert doc.ref.format == "md"
    assert doc.ref.source == "https://x.test/old"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (404, "HTTP error 404 Not Found"),
        (500, "HTTP error 500 Internal Server Error"),
        (403, "HTTP error 403"),
    ],
)
def test_url_http_errors(status, expected):
    error = url_error("https://x.test/a", lambda request: httpx.Response(status))
    assert error.reason == expected or error.reason.startswith(expected)


@pytest.mark.parametrize(
    ("status", "expected"),
    [(204, "empty response (HTTP 204 No Content)"), (304, "unexpected HTTP status 304")],
)
def test_url_unexpected_status(status, expected):
    assert url_error("https://x.test/a", lambda request: httpx.Response(status)).reason == expected


def test_url_redirect_loop():
    handler = routes(
        {
            "https://x.test/a": lambda: httpx.Response(302, headers={"location": "/b"}),
            "https://x.test/b": lambda: httpx.Response(302, headers={"location": "/a"}),
        }
    )
    assert "redirect loop" in url_error("https://x.test/a", handler).reason


def test_url_too_many_redirects():
    def handler(request: httpx.Request) -> httpx.Response:
        step = int(request.url.path.strip("/") or 0)
        return httpx.Response(302, headers={"location": f"/{step + 1}"})

    requests = []

    def counting(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return handler(request)

    error = url_error("https://x.test/0", counting)
    assert error.reason == "too many redirects (more than 5)"
    assert len(requests) == 6


def test_url_redirect_to_other_scheme():
    handler = routes(
        {"https://x.test/a": lambda: httpx.Response(302, headers={"location": "ftp://x.test/f"})}
    )
    assert "non-http(s)" in url_error("https://x.test/a", handler).reason


def test_url_oversize_by_content_length():
    handler = routes(
        {
            "https://x.test/big": lambda: httpx.Response(
                200, content=b"x" * 5000, headers={"content-type": "text/plain"}
            )
        }
    )
    error = url_error("https://x.test/big", handler, max_bytes=1000)
    assert error.reason == "too large: 5,000 bytes, over max_bytes (1,000)"


def test_url_oversize_streamed_stops_early():
    produced = []

    def chunks():
        for _ in range(1000):
            produced.append(1)
            yield b"y" * 100

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=chunks(), headers={"content-type": "text/plain"})

    error = url_error("https://x.test/stream", handler, max_bytes=1000)
    assert "too large" in error.reason
    assert len(produced) < 20  # aborted as soon as the limit was passed


@pytest.mark.parametrize("content_type", ["image/png", "application/zip", "video/mp4"])
def test_url_wrong_content_type(content_type):
    handler = routes(
        {
            "https://x.test/f": lambda: httpx.Response(
                200, content=b"data", headers={"content-type": content_type}
            )
        }
    )
    error = url_error("https://x.test/f", handler)
    assert error.reason.startswith(f"unsupported content type {content_type!r}")


def test_url_untyped_without_extension():
    handler = routes(
        {
            "https://x.test/f": lambda: httpx.Response(
                200, content=b"data", headers={"content-type": "application/octet-stream"}
            )
        }
    )
    assert "set 'format'" in url_error("https://x.test/f", handler).reason


def test_url_timeout():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("read timed out", request=request)

    assert url_error("https://x.test/slow", handler, timeout=2.5).reason == "timed out after 2.5 s"


def test_url_connection_error():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("name resolution failed", request=request)

    error = url_error("https://x.test/down", handler)
    assert error.reason == "request failed: ConnectError: name resolution failed"


def test_url_binary_body_with_text_type():
    handler = routes(
        {
            "https://x.test/t": lambda: httpx.Response(
                200, content=b"\x00\x01\x02", headers={"content-type": "text/plain"}
            )
        }
    )
    assert "binary file" in url_error("https://x.test/t", handler).reason


def test_url_invalid_json_body():
    handler = routes(
        {
            "https://x.test/j": lambda: httpx.Response(
                200, content=b'{"a": ', headers={"content-type": "application/json"}
            )
        }
    )
    assert url_error("https://x.test/j", handler).reason.startswith("invalid JSON at line 1")


def test_load_sources_shares_the_injected_client():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(
            200,
            content=f"body of {request.url.path}".encode(),
            headers={"content-type": "text/plain"},
        )

    with mock_client(handler) as client:
        docs = load_sources(
            [source("https://x.test/one"), source("plain.txt"), source("https://x.test/two")],
            base_dir=FIXTURES,
            client=client,
        )
    assert [doc.ref.kind for doc in docs] == ["url", "file", "url"]
    assert seen == ["https://x.test/one", "https://x.test/two"]
