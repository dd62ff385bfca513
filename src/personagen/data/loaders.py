"""Loading the data sources of a run spec (files, directories, globs, URLs, inline text).

`load_sources` turns the spec's `data` list into `LoadedDocument`s: raw bytes are read (or
downloaded, bounded in size, time and redirects), hashed for a stable document id, and handed
to the format extractors. Every failure is a `DataSourceError` naming the path, glob or URL
and saying what is wrong, so the CLI can print one clear line instead of a traceback.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import stat
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from personagen.data._extract import SUPPORTED_EXTENSIONS, ExtractionError, extract
from personagen.errors import DataSourceError
from personagen.state.documents import DocumentFormat, DocumentRef, LoadedDocument
from personagen.state.spec import DataSource

if TYPE_CHECKING:
    import httpx

__all__ = ["MAX_REDIRECTS", "SUPPORTED_EXTENSIONS", "load_source", "load_sources"]

MAX_REDIRECTS = 5
"""Redirects followed for one URL before giving up."""

_USER_AGENT = "personagen-loader/0.1 (+https://pypi.org/project/personagen/)"
_ACCEPT = (
    "text/html, application/xhtml+xml, text/markdown, text/plain, application/json, "
    "application/x-ndjson, text/csv, application/pdf;q=0.9, text/*;q=0.8"
)
_CONTENT_TYPE_FORMATS: dict[str, DocumentFormat] = {
    "text/html": "html",
    "application/xhtml+xml": "html",
    "text/markdown": "md",
    "text/x-markdown": "md",
    "text/x-rst": "rst",
    "text/prs.fallenstein.rst": "rst",
    "text/csv": "csv",
    "application/json": "json",
    "text/json": "json",
    "application/x-ndjson": "jsonl",
    "application/pdf": "pdf",
}
_ALLOWED_TYPES = (
    "text/*, application/json, application/pdf, application/xhtml+xml or application/x-ndjson"
)
# Servers that do not know a file's type send these; the URL extension or `format` decides.
_UNTYPED = {"", "application/octet-stream", "binary/octet-stream"}
_CHARSET_RE = re.compile(r"""charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.I)
_GLOB_CHARS_RE = re.compile(r"[*?[]")
_SUPPORTED_LIST = ", ".join(sorted(SUPPORTED_EXTENSIONS))


def load_source(
    source: DataSource,
    *,
    base_dir: Path | str | None = None,
    client: httpx.Client | None = None,
) -> list[LoadedDocument]:
    """Load every document of one data source.

    Args:
        source: A path (file, directory or glob), a URL, or inline text.
        base_dir: Directory relative paths and globs resolve against (default: the current
            working directory).
        client: HTTP client for URL sources; one is created (and closed) when omitted. Tests
            pass `httpx.Client(transport=httpx.MockTransport(handler))`.

    Returns:
        The documents, sorted by path for directories and globs; a document whose bytes were
        already seen in this source is kept once.

    Raises:
        DataSourceError: The source, or one of its files, cannot be read.
    """
    return _dedupe(_load(source, base_dir=base_dir, client=client, inline_number=1))


def load_sources(
    sources: Iterable[DataSource],
    *,
    base_dir: Path | str | None = None,
    client: httpx.Client | None = None,
) -> list[LoadedDocument]:
    """Load the documents of all sources, in order, keeping each distinct document once.

    Inline texts without a `name` are labelled `inline:text-1`, `inline:text-2`, ... in the
    order they appear. Documents with the same sha256 (the same bytes reached twice, through
    overlapping globs or a file that is also given inline) are kept at their first place.

    Args:
        sources: The data sources, typically `RunSpec.data`.
        base_dir: Directory relative paths resolve against (default: the current directory).
        client: HTTP client shared by URL sources; one is created (and closed) when needed.

    Returns:
        The documents of all sources.

    Raises:
        DataSourceError: For the first source that cannot be read.
    """
    owned: httpx.Client | None = None
    documents: list[LoadedDocument] = []
    inline_count = 0
    try:
        for source in sources:
            if source.url is not None and client is None and owned is None:
                owned = _new_client()
            if source.text is not None:
                inline_count += 1
            documents.extend(
                _load(
                    source,
                    base_dir=base_dir,
                    client=client or owned,
                    inline_number=max(inline_count, 1),
                )
            )
    finally:
        if owned is not None:
            owned.close()
    return _dedupe(documents)


def _dedupe(documents: list[LoadedDocument]) -> list[LoadedDocument]:
    seen: set[str] = set()
    unique = []
    for document in documents:
        if document.ref.id not in seen:
            seen.add(document.ref.id)
            unique.append(document)
    return unique


def _load(
    source: DataSource,
    *,
    base_dir: Path | str | None,
    client: httpx.Client | None,
    inline_number: int,
) -> list[LoadedDocument]:
    if source.path is not None:
        return [_load_file(path, source) for path in _resolve_files(source, base_dir)]
    if source.url is not None:
        return [_load_url(source, client)]
    if source.text is not None:
        return [_load_inline(source, inline_number)]
    raise DataSourceError(source.reference, "no path, url or text given")  # pragma: no cover


def _document(
    data: bytes,
    fmt: DocumentFormat,
    *,
    reference: str,
    kind: Literal["file", "url", "inline"],
    source: DataSource,
    declared_encoding: str | None = None,
) -> LoadedDocument:
    try:
        extracted = extract(
            data,
            fmt,
            encoding=source.encoding,
            declared_encoding=declared_encoding,
            fields=source.fields,
        )
    except ExtractionError as exc:
        raise DataSourceError(reference, exc.reason) from None
    ref = DocumentRef(
        id=hashlib.sha256(data).hexdigest(),
        source=reference,
        kind=kind,
        format=fmt,
        bytes=len(data),
        chars=len(extracted.text),
        title=extracted.title,
    )
    return LoadedDocument(ref=ref, text=extracted.text)


# --- inline text ----------------------------------------------------------------------------


def _load_inline(source: DataSource, number: int) -> LoadedDocument:
    reference = f"inline:{source.name or f'text-{number}'}"
    fmt = source.format or "txt"
    if fmt == "pdf":
        raise DataSourceError(reference, "inline text cannot be read as pdf")
    assert source.text is not None
    # Inline text is already a str; re-encoding as UTF-8 gives the bytes its id hashes.
    data = source.text.encode("utf-8")
    inline = source.model_copy(update={"encoding": "utf-8"})
    return _document(data, fmt, reference=reference, kind="inline", source=inline)


# --- local files ----------------------------------------------------------------------------


def _format_for_path(path: Path) -> DocumentFormat | None:
    return SUPPORTED_EXTENSIONS.get(path.suffix.lower())


def _load_file(path: Path, source: DataSource) -> LoadedDocument:
    reference = str(path)
    fmt = source.format or _format_for_path(path)
    if fmt is None:
        what = f"unsupported extension {path.suffix!r}" if path.suffix else "no file extension"
        raise DataSourceError(
            reference,
            f"{what} (supported: {_SUPPORTED_LIST}); set 'format' to read it as one of them",
        )
    data = _read_file(path, source.max_bytes, reference)
    return _document(data, fmt, reference=reference, kind="file", source=source)


def _read_file(path: Path, max_bytes: int, reference: str) -> bytes:
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise DataSourceError(reference, "not a regular file")
        if info.st_size > max_bytes:
            raise DataSourceError(
                reference, f"too large: {info.st_size:,} bytes, over max_bytes ({max_bytes:,})"
            )
        with path.open("rb") as handle:
            # One byte past the limit tells a file that grew since stat() from one that fits.
            data = handle.read(max_bytes + 1)
    except FileNotFoundError:
        raise DataSourceError(reference, "file not found") from None
    except PermissionError:
        raise DataSourceError(reference, "permission denied") from None
    except IsADirectoryError:
        raise DataSourceError(reference, "not a regular file") from None
    except OSError as exc:
        raise DataSourceError(reference, f"cannot read: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise DataSourceError(reference, f"too large: over max_bytes ({max_bytes:,})")
    return data


def _resolve_files(source: DataSource, base_dir: Path | str | None) -> list[Path]:
    assert source.path is not None
    given = source.path
    expanded = os.path.expanduser(given)
    root = Path(base_dir) if base_dir is not None else Path.cwd()
    candidate = Path(os.path.abspath(expanded if os.path.isabs(expanded) else root / expanded))
    excludes = _Excludes(source.exclude, roots=[root])

    try:
        is_dir, exists = candidate.is_dir(), candidate.exists()
    except (OSError, ValueError) as exc:  # name too long, NUL byte, ...
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise DataSourceError(given, f"invalid path: {reason}") from None
    # An existing path wins over glob syntax: file names may contain '[' or '?'.
    if is_dir:
        return _walk_directory(candidate, source, excludes, given)
    if exists:
        if excludes.match(candidate, extra_root=candidate.parent):
            raise DataSourceError(given, "the file is excluded by 'exclude'")
        return [candidate]
    if _GLOB_CHARS_RE.search(expanded):
        return _expand_glob(expanded, root, source, excludes, given)
    raise DataSourceError(given, f"path not found ({candidate})")


def _selectable(path: Path, source: DataSource) -> bool:
    # With an explicit format the user says what the files are, whatever their extension.
    return source.format is not None or _format_for_path(path) is not None


def _walk_directory(
    directory: Path, source: DataSource, excludes: _Excludes, given: str
) -> list[Path]:
    def fail(error: OSError) -> None:
        where = error.filename or directory
        raise DataSourceError(given, f"cannot read directory {where}: {error.strerror or error}")

    files: list[Path] = []
    seen = 0
    for current, dirnames, filenames in os.walk(directory, onerror=fail):
        # Hidden directories (.git, .venv, ...) are pruned in place so os.walk skips them.
        dirnames[:] = sorted(name for name in dirnames if not name.startswith("."))
        for name in filenames:
            if name.startswith("."):
                continue
            path = Path(current, name)
            seen += 1
            if _selectable(path, source) and path.is_file():
                files.append(path)
    if not files:
        if seen:
            reason = (
                f"directory has no supported files ({seen} other file(s); "
                f"supported: {_SUPPORTED_LIST})"
            )
        else:
            reason = "directory has no supported files (it is empty)"
        raise DataSourceError(given, reason)
    kept = [path for path in files if not excludes.match(path, extra_root=directory)]
    if not kept:
        raise DataSourceError(given, f"all {len(files)} file(s) are excluded by 'exclude'")
    return sorted(kept)


def _expand_glob(
    pattern: str, root: Path, source: DataSource, excludes: _Excludes, given: str
) -> list[Path]:
    # glob.glob skips hidden files and directories unless the pattern names them explicitly;
    # root_dir keeps magic characters in base_dir from being read as part of the pattern.
    matches = glob.glob(pattern, root_dir=None if os.path.isabs(pattern) else root, recursive=True)
    paths = [
        Path(os.path.abspath(match if os.path.isabs(match) else root / match)) for match in matches
    ]
    paths = [path for path in paths if path.is_file()]
    if not paths:
        raise DataSourceError(given, "glob matched no files")
    files = [path for path in paths if _selectable(path, source)]
    if not files:
        raise DataSourceError(
            given,
            f"glob matched {len(paths)} file(s), none with a supported extension "
            f"(supported: {_SUPPORTED_LIST})",
        )
    glob_root = _glob_root(pattern, root)
    kept = [path for path in files if not excludes.match(path, extra_root=glob_root)]
    if not kept:
        raise DataSourceError(given, f"all {len(files)} matching file(s) are excluded by 'exclude'")
    return sorted(set(kept))


def _glob_root(pattern: str, root: Path) -> Path:
    """The directory a glob starts from: its longest leading part without glob characters."""
    parts = Path(pattern).parts
    fixed: list[str] = []
    for part in parts:
        if _GLOB_CHARS_RE.search(part):
            break
        fixed.append(part)
    base = Path(*fixed) if fixed else Path()
    return Path(os.path.abspath(base if base.is_absolute() else root / base))


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """Compile a glob with `**` (any number of directories), `*`, `?` and `[...]`."""
    out: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**/", index):
            out.append("(?:.*/)?")
            index += 3
            continue
        if pattern.startswith("**", index):
            out.append(".*")
            index += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            close = pattern.find("]", index + 2)
            if close == -1:
                out.append(re.escape(char))
            else:
                body = pattern[index + 1 : close]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                index = close
        else:
            out.append(re.escape(char))
        index += 1
    return re.compile("".join(out))


class _Excludes:
    """The `exclude` globs of a source.

    A pattern without a slash matches a file name or any directory name on the way
    (`*.tmp`, `drafts`); one with a slash matches the path relative to the source's directory
    (or glob root), relative to base_dir, or absolute, and a match on a directory excludes
    everything below it.
    """

    def __init__(self, patterns: list[str], roots: list[Path]) -> None:
        self._names: list[re.Pattern[str]] = []
        self._paths: list[re.Pattern[str]] = []
        for pattern in patterns:
            cleaned = pattern.strip().replace("\\", "/").removeprefix("./").rstrip("/")
            if not cleaned:
                continue
            target = self._paths if "/" in cleaned else self._names
            target.append(_glob_regex(cleaned))
        self._roots = [Path(os.path.abspath(root)) for root in roots]

    def match(self, path: Path, *, extra_root: Path | None = None) -> bool:
        """True when `path` is excluded."""
        if not (self._names or self._paths):
            return False
        roots = [extra_root, *self._roots] if extra_root is not None else self._roots
        relatives = []
        for root in roots:
            try:
                relatives.append(path.relative_to(root).as_posix())
            except ValueError:
                continue
        if self._names:
            names = {part for relative in relatives for part in relative.split("/")}
            names.add(path.name)
            if any(regex.fullmatch(name) for regex in self._names for name in names):
                return True
        candidates = [*relatives, path.as_posix()]
        for candidate in candidates:
            parts = candidate.split("/")
            prefixes = ["/".join(parts[: end + 1]) for end in range(len(parts))]
            if any(regex.fullmatch(prefix) for regex in self._paths for prefix in prefixes):
                return True
        return False


# --- URLs -----------------------------------------------------------------------------------


def _new_client() -> httpx.Client:
    import httpx

    return httpx.Client(
        follow_redirects=False, headers={"User-Agent": _USER_AGENT, "Accept": _ACCEPT}
    )


def _load_url(source: DataSource, client: httpx.Client | None) -> LoadedDocument:
    assert source.url is not None
    owned = client is None
    http = client if client is not None else _new_client()
    try:
        data, media_type, charset, final_path = _download(source, http)
    finally:
        if owned:
            http.close()
    fmt = source.format or _format_for_response(media_type, final_path, source.url)
    return _document(
        data, fmt, reference=source.url, kind="url", source=source, declared_encoding=charset
    )


def _url_format(path: str) -> DocumentFormat | None:
    return SUPPORTED_EXTENSIONS.get(Path(path).suffix.lower()) if path else None


def _format_for_response(media_type: str, final_path: str, url: str) -> DocumentFormat:
    typed = _CONTENT_TYPE_FORMATS.get(media_type)
    if typed is not None:
        return typed
    # Generic types (text/plain, octet-stream): the extension is the better hint.
    return _url_format(final_path) or _url_format(_path_of(url)) or "txt"


def _path_of(url: str) -> str:
    import httpx

    try:
        return httpx.URL(url).path
    except httpx.InvalidURL:
        return ""


def _download(source: DataSource, client: httpx.Client) -> tuple[bytes, str, str | None, str]:
    """GET a URL, following redirects by hand so they stay bounded and http(s) only.

    Returns:
        The body, its media type, its declared charset, and the path of the final URL.
    """
    import httpx

    assert source.url is not None
    url = source.url
    timeout = source.timeout
    deadline = time.monotonic() + timeout
    try:
        current = httpx.URL(url)
        seen = {str(current)}
        for redirects in range(MAX_REDIRECTS + 1):
            request = client.build_request("GET", current, timeout=httpx.Timeout(timeout))
            response = client.send(request, stream=True, follow_redirects=False)
            try:
                if response.has_redirect_location:
                    target = response.url.join(response.headers["location"])
                    if target.scheme not in ("http", "https"):
                        raise DataSourceError(url, f"redirect to a non-http(s) URL: {target}")
                    if str(target) in seen:
                        raise DataSourceError(url, f"redirect loop: {current} -> {target}")
                    if redirects == MAX_REDIRECTS:
                        raise DataSourceError(
                            url, f"too many redirects (more than {MAX_REDIRECTS})"
                        )
                    seen.add(str(target))
                    current = target
                    continue
                return _read_response(source, response, deadline)
            finally:
                response.close()
    except DataSourceError:
        raise
    except httpx.TimeoutException:
        raise DataSourceError(url, f"timed out after {timeout:g} s") from None
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        raise DataSourceError(url, f"invalid URL: {exc}") from None
    except httpx.HTTPError as exc:
        raise DataSourceError(url, f"request failed: {type(exc).__name__}: {exc}") from None
    except httpx.StreamError as exc:
        raise DataSourceError(url, f"download failed: {type(exc).__name__}: {exc}") from None
    raise AssertionError("unreachable: the redirect loop returns or raises")  # pragma: no cover


def _read_response(
    source: DataSource, response: httpx.Response, deadline: float
) -> tuple[bytes, str, str | None, str]:
    assert source.url is not None
    url = source.url
    status = response.status_code
    if status >= 400:
        phrase = f" {response.reason_phrase}" if response.reason_phrase else ""
        raise DataSourceError(url, f"HTTP error {status}{phrase}")
    if status == 204:
        raise DataSourceError(url, "empty response (HTTP 204 No Content)")
    if not 200 <= status < 300:
        raise DataSourceError(url, f"unexpected HTTP status {status}")

    content_type = response.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    charset_match = _CHARSET_RE.search(content_type)
    charset = charset_match.group(1) if charset_match else None
    final_path = response.url.path
    if media_type in _UNTYPED:
        if source.format is None and not (_url_format(final_path) or _url_format(_path_of(url))):
            raise DataSourceError(
                url,
                f"content type {media_type or '(none)'!r} does not say what the document is "
                "and the URL has no known extension; set 'format'",
            )
    elif not (media_type.startswith("text/") or media_type in _CONTENT_TYPE_FORMATS):
        raise DataSourceError(
            url, f"unsupported content type {media_type!r} (expected {_ALLOWED_TYPES})"
        )

    max_bytes = source.max_bytes
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise DataSourceError(
            url, f"too large: {int(declared):,} bytes, over max_bytes ({max_bytes:,})"
        )
    body = bytearray()
    for piece in response.iter_bytes():
        body += piece
        if len(body) > max_bytes:
            raise DataSourceError(
                url, f"too large: download passed max_bytes ({max_bytes:,}); stopped"
            )
        if time.monotonic() > deadline:
            raise DataSourceError(url, f"timed out after {source.timeout:g} s")
    return bytes(body), media_type, charset, final_path
