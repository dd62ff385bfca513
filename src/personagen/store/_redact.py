"""Strip secrets from values before they are stored or shown: URL passwords, token params."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "***"
# Keys whose values are secrets. `api_key_env` holds the *name* of a variable, so it stays.
_SECRET_KEY = re.compile(
    r"(?i)(^|[_-])(api[_-]?key|(secret|access|private)[_-]?key|key|token|secret|password|passwd"
    r"|pwd|authorization|auth|credentials?|sig|signature)$"
)
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def redact_url(url: str) -> str:
    """The URL without its password and without the values of secret-looking query params."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{REDACTED}@{host}" if ":" in userinfo else f"{user}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_SECRET_KEY.search(k) for k, _ in pairs):
            query = urlencode(
                [(k, REDACTED if _SECRET_KEY.search(k) else v) for k, v in pairs], safe="*"
            )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact(value: Any) -> Any:
    """A copy of a JSON-like value with secret keys masked and URLs cleaned."""
    if isinstance(value, dict):
        return {
            k: (REDACTED if value[k] and _SECRET_KEY.search(str(k)) else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str) and _URL.match(value):
        return redact_url(value)
    return value
