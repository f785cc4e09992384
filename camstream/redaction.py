"""Secrets never leave the process: credentials in URLs are replaced by *** wherever camstream writes text.

The user:password part is read as FFmpeg reads a URL's authority: everything up to the *last* @ before the
path's query or fragment, so a password holding an unencoded @ or / is hidden whole (`rtsp://admin:a@b/c@host/x`
→ `rtsp://***@host/x`). Query parameters that commonly carry secrets (password, token, key, …) are masked too.
"""

from __future__ import annotations

import re

_USERINFO = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^?#\s'\"]*@")
_SECRET_PARAMETER = re.compile(r"(?i)([?&](?:password|passwd|pass|pwd|token|secret|key|auth|apikey|api_key)=)"
                               r"[^&#\s'\"]*")


def redact(text: str) -> str:
    """`text` (a URL, or any message that may hold URLs) with credentials and secret parameters as ***."""
    return _SECRET_PARAMETER.sub(r"\1***", _USERINFO.sub(r"\1***@", text))
