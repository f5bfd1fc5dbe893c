"""The one redaction rule: what is cut out of any text before it is logged, printed or stored.

`redact(text, secrets)` is applied to every URL we print and to every text that comes from a
server, a proxy or an HTTP library (error messages, per-item reasons that end up in the log and
in the dead-letter file). It removes:

- user information in URLs: `https://user:secret@host` -> `https://***@host` (hosts, proxies);
- credentials after an HTTP authentication scheme: `Basic …`, `ApiKey …`, `Bearer …` (a server
  or proxy that echoes our Authorization header back, in an error or an item's reason);
- every configured secret given in `secrets` (password, API key, token, the encoded header
  value, a proxy password), wherever it appears.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"
_URL_USERINFO = re.compile(r"//[^/@\s]*@")
# A token after the scheme name: base64 (Basic, ApiKey), or a JWT/opaque token (Bearer). At
# least 8 characters, so that prose such as `Basic realm="security"` stays readable.
_AUTH_SCHEME = re.compile(r"\b(Basic|ApiKey|Bearer)(\s+)[A-Za-z0-9+/=._~-]{8,}", re.IGNORECASE)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` without URL credentials, Authorization header values or any of `secrets`."""
    text = _URL_USERINFO.sub("//" + MASK + "@", text)
    text = _AUTH_SCHEME.sub(r"\1\2" + MASK, text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text
