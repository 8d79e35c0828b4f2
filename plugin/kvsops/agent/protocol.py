"""The agent's wire protocol, version 1: one request and one answer per connection.

A frame is ``b"KVA"``, a version byte, the payload length (4 bytes, big-endian) and the payload:
one value in a small tag-length-value encoding (JSON and marshal are not used: ``json`` imports
``re``, which every client would pay at start-up, and ``marshal`` is not meant for data from
another process). Tags::

    N None    T True    F False    i int (8 bytes, signed)    b bytes (4-byte length)
    s str (UTF-8 with surrogateescape, 4-byte length)    l list (4-byte count)
    d dict (4-byte count, then key and value for each; keys are str)

A request is a dict with ``op``; an answer is ``{"ok": value}``, ``{"error": {...}}`` (a
KvsopsError, rebuilt by the client) or ``{"unavailable": reason}`` (the agent cannot serve this
client: the client falls back to working in-process, or fails when the agent is required).

Both sides cap what they read (``MAX_REQUEST``, ``MAX_ANSWER``, ``MAX_DEPTH``) before allocating,
so a hostile peer of the same user can waste a connection slot, not memory. Nothing here imports
anything.
"""

from __future__ import annotations

MAGIC = b"KVA"
VERSION = 1
HEADER = 8
# The largest input file any host reads is 64 MiB; a request carries one file and a little more.
MAX_REQUEST = 72 * 1024 * 1024
# A decrypted file is smaller than its encrypted form, plus the emitter's indentation.
MAX_ANSWER = 160 * 1024 * 1024
MAX_DEPTH = 16


class ProtocolError(Exception):
    """A malformed, oversized or other-version frame. The message is public (no payload)."""


def frame(value: object, version: int = VERSION) -> bytes:
    body = encode(value)
    return MAGIC + bytes((version,)) + len(body).to_bytes(4, "big") + body


def payload_length(header: bytes, limit: int) -> int:
    """The payload length announced by a frame header; ProtocolError for anything else."""
    if len(header) != HEADER or header[:3] != MAGIC:
        raise ProtocolError("not a kvsops agent frame")
    if header[3] != VERSION:
        raise ProtocolError(f"the peer speaks protocol version {header[3]}, this side {VERSION}")
    n = int.from_bytes(header[4:], "big")
    if n > limit:
        raise ProtocolError(f"a frame of {n} bytes is larger than the limit of {limit}")
    return n


# ----------------------------------------------------------------------------- values


def encode(value: object) -> bytes:
    out: list[bytes] = []
    _put(value, out, 0)
    return b"".join(out)


def _n(n: int) -> bytes:
    return n.to_bytes(4, "big")


def _put(value: object, out: list[bytes], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ProtocolError("value nested too deeply")
    if value is None:
        out.append(b"N")
    elif value is True:
        out.append(b"T")
    elif value is False:
        out.append(b"F")
    elif isinstance(value, int):
        out.append(b"i" + value.to_bytes(8, "big", signed=True))
    elif isinstance(value, bytes):
        out.append(b"b" + _n(len(value)))
        out.append(value)
    elif isinstance(value, str):
        data = value.encode("utf-8", "surrogateescape")
        out.append(b"s" + _n(len(data)))
        out.append(data)
    elif isinstance(value, (list, tuple)):
        out.append(b"l" + _n(len(value)))
        for item in value:
            _put(item, out, depth + 1)
    elif isinstance(value, dict):
        out.append(b"d" + _n(len(value)))
        for k, v in value.items():
            if not isinstance(k, str):
                raise ProtocolError("dict keys must be strings")
            _put(k, out, depth + 1)
            _put(v, out, depth + 1)
    else:
        raise ProtocolError(f"cannot encode a {type(value).__name__}")


def decode(data: bytes) -> object:
    value, end = _get(data, 0, 0)
    if end != len(data):
        raise ProtocolError("trailing bytes after the value")
    return value


def _size(data: bytes, i: int) -> tuple[int, int]:
    if i + 4 > len(data):
        raise ProtocolError("truncated value")
    return int.from_bytes(data[i:i + 4], "big"), i + 4


def _get(data: bytes, i: int, depth: int) -> tuple[object, int]:
    if depth > MAX_DEPTH:
        raise ProtocolError("value nested too deeply")
    if i >= len(data):
        raise ProtocolError("truncated value")
    tag = data[i]
    i += 1
    if tag == 78:  # N
        return None, i
    if tag == 84:  # T
        return True, i
    if tag == 70:  # F
        return False, i
    if tag == 105:  # i
        if i + 8 > len(data):
            raise ProtocolError("truncated value")
        return int.from_bytes(data[i:i + 8], "big", signed=True), i + 8
    if tag in (98, 115):  # b, s
        n, i = _size(data, i)
        if i + n > len(data):
            raise ProtocolError("truncated value")
        raw = data[i:i + n]
        return (raw if tag == 98 else raw.decode("utf-8", "surrogateescape")), i + n
    if tag == 108:  # l
        n, i = _size(data, i)
        if n > len(data) - i:  # every item takes at least one byte: no allocation beyond the frame
            raise ProtocolError("truncated value")
        items = []
        for _ in range(n):
            item, i = _get(data, i, depth + 1)
            items.append(item)
        return items, i
    if tag == 100:  # d
        n, i = _size(data, i)
        if 2 * n > len(data) - i:
            raise ProtocolError("truncated value")
        out: dict[str, object] = {}
        for _ in range(n):
            key, i = _get(data, i, depth + 1)
            if not isinstance(key, str):
                raise ProtocolError("dict keys must be strings")
            out[key], i = _get(data, i, depth + 1)
        return out, i
    raise ProtocolError(f"unknown tag {tag}")
