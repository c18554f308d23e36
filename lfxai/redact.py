"""Secrets stay out of everything lfxai writes: one pattern-based redaction for any text.

:func:`redact` masks the credentials a URL or a message can carry, whether or not the URL
parses: the password of a ``scheme://user:password@host`` user part (also of an
unparsable URL such as ``postgresql://u:pw@host:notaport/db``), key-value secrets such as
``?password=...``, ``&token=...`` or ``MLFLOW_TRACKING_PASSWORD=...``, and the value of an
``Authorization:`` header. It is applied to every tag, param and text artifact a
:class:`lfxai.tracking.Tracker` writes and to every error and store URI we print.
"""

from __future__ import annotations

import re

MASK = "***"
# scheme://user:password@ -- the password runs to the LAST '@' of the URL (an unencoded '@'
# in a password must not leak its tail), never across whitespace or quotes.
_USERINFO = re.compile(
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s/?#@:'\"`]*):(?P<secret>[^\s'\"`]+)@"
)
# key=value where the key names a secret (a query parameter, a libpq keyword, a variable);
# the key may carry a prefix (sslpassword, MLFLOW_TRACKING_PASSWORD, X-Api-Key).
_SECRET_KEYS = (
    r"password|passwd|pass|pwd|secret|token|api[_\-]?key|access[_\-]?key|private[_\-]?key"
    r"|credentials?|auth"
)
_KEY_VALUE = re.compile(
    rf"(?i)(?P<head>(?<![A-Za-z0-9])[A-Za-z0-9_.\-]*?(?:{_SECRET_KEYS})\s*=\s*)"
    r"(?P<secret>[^\s&;,'\"`]+)"
)
_AUTH_HEADER = re.compile(
    r"(?i)(?P<head>authorization\s*[:=]\s*(?:basic|bearer|token)?\s*)"
    r"(?P<secret>[^\s'\"`]+)"
)


def redact(text: str) -> str:
    """``text`` with every credential it carries replaced by ``***``.

    Example: ``postgresql+psycopg://user:s3cret@db/optuna?token=abc`` becomes
    ``postgresql+psycopg://user:***@db/optuna?token=***``.
    """
    text = _USERINFO.sub(lambda m: f"{m['head']}:{MASK}@", text)
    text = _KEY_VALUE.sub(lambda m: f"{m['head']}{MASK}", text)
    return _AUTH_HEADER.sub(lambda m: f"{m['head']}{MASK}", text)


def has_secret(text: str) -> bool:
    """Whether :func:`redact` would mask anything in ``text`` (e.g. a URL with a password)."""
    return redact(text) != text
