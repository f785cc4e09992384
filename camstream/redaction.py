"""Secrets never leave the process: credentials in URLs are replaced by *** wherever camstream writes text.

Two layers. By parsing: every source URL camstream is given is split before use (`remember_secrets`) and its
user-info part — everything between the scheme's `://` and the last `@` of the URL, however it is spelled:
reserved characters, percent-encoding, quotes, spaces, several `@` — is remembered, with its user and password
decoded and percent-encoded; `redact` then replaces each remembered spelling wherever it appears. By pattern, for
URLs nobody registered (an error from a library, a file of sources): the user-info is read as FFmpeg reads a URL's
authority, up to the *last* @ before the query or fragment (`rtsp://admin:a@b/c@host/x` → `rtsp://***@host/x`),
and query parameters that commonly carry secrets (password, token, key, …) are masked.
"""

from __future__ import annotations

import json
import re
import threading
from urllib.parse import quote, unquote

_SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://")
_USERINFO = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^?#\s'\"]*@")
_SECRET_PARAMETER = re.compile(r"(?i)([?&](?:password|passwd|pass|pwd|token|secret|key|auth|apikey|api_key)=)"
                               r"[^&#\s'\"]*")
_SHORTEST_BARE_SECRET = 4  # a user or password alone is hidden wherever it appears only from this length on
_secrets: set[str] = set()
_lock = threading.Lock()


def userinfo(url: str) -> str | None:
    """The user-info part of the URL in `url` (between `scheme://` and the text's last `@`; the URL may follow
    other text, as in `--source=rtsp://…`), or None when it has none."""
    scheme = _SCHEME.search(url.strip())
    if scheme is None:
        return None
    rest = url.strip()[scheme.end():]
    at = rest.rfind("@")
    return rest[:at] if at > 0 else None


def remember_secrets(url: str) -> None:
    """Remember the credentials of `url` (a source camstream was given), so that `redact` hides each spelling of
    them anywhere: the user-info as written and decoded, and the password (and a user) alone, as written,
    decoded, percent-encoded and escaped (repr, JSON), when at least 4 characters long (a shorter one would
    blank ordinary text)."""
    info = userinfo(url)
    if not info:
        return
    spellings = {info, unquote(info)}
    for part in info.split(":", 1):
        for plain in (part, unquote(part)):
            # as written, percent-encoded, and escaped as Python's repr() and JSON write it
            for spelling in (plain, quote(plain, safe=""), repr(plain)[1:-1], json.dumps(plain)[1:-1]):
                if len(spelling) >= _SHORTEST_BARE_SECRET:
                    spellings.add(spelling)
    with _lock:
        _secrets.update(spellings)


def redact(text: str) -> str:
    """`text` (a URL, or any message that may hold URLs) with credentials and secret parameters as ***."""
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        text = text.replace(secret, "***")
    return _SECRET_PARAMETER.sub(r"\1***", _USERINFO.sub(r"\1***@", text))
