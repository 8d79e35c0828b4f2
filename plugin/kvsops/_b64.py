"""base64 without the stdlib module: ``base64`` imports ``re`` (with ``enum`` and ``functools``:
~5 ms of every process start), and these are the only two calls on the hot paths."""

from __future__ import annotations

import sys
from binascii import a2b_base64, b2a_base64

__all__ = ["b64encode", "b64decode_strict"]


def b64encode(data: bytes) -> bytes:
    """``base64.b64encode(data)``, which is exactly this call."""
    return b2a_base64(data, newline=False)


if sys.version_info >= (3, 11):

    def b64decode_strict(s: str | bytes) -> bytes:
        """``base64.b64decode(s, validate=True)``, which is exactly this call since 3.11.

        Raises ``binascii.Error`` on bad base64 and ``ValueError`` on a non-ASCII ``str``."""
        return a2b_base64(s, strict_mode=True)

else:  # pragma: no cover - Python 3.10: keep the stdlib's own (regex) validation

    def b64decode_strict(s: str | bytes) -> bytes:
        import base64

        return base64.b64decode(s, validate=True)
