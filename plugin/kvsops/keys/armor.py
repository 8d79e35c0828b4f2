"""age's ASCII armor (what sops stores in ``enc``): 64-column base64 with a trailing newline."""

from __future__ import annotations

import binascii

from kvsops._b64 import b64decode_strict, b64encode

BEGIN = "-----BEGIN AGE ENCRYPTED FILE-----"
END = "-----END AGE ENCRYPTED FILE-----"


def armor(data: bytes) -> str:
    b64 = b64encode(data).decode()
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return BEGIN + "\n" + "\n".join(lines) + "\n" + END + "\n"


def dearmor(text: str) -> bytes:
    body = text.strip()
    if not (body.startswith(BEGIN) and body.endswith(END)):
        raise ValueError("not an armored age file")
    inner = "".join(body[len(BEGIN) : -len(END)].split())
    try:
        return b64decode_strict(inner)
    except binascii.Error:
        raise ValueError("invalid base64 in armored age file") from None
