"""Shamir secret sharing over GF(2^8), compatible with sops' (Vault-derived) share encoding.

A share is ``len(secret) + 1`` bytes: one y value per secret byte, then the x coordinate LAST.
sops gives key group i (0-based) the share with x = i + 1.
"""

from __future__ import annotations

import os

from kvsops.errors import FormatError


def _build_tables() -> tuple[list[int], list[int]]:
    exp = [0] * 512
    log = [0] * 256
    x = 1
    for i in range(255):
        exp[i] = x
        log[x] = i
        # multiply by the generator 3 in GF(2^8) with the AES polynomial 0x11B
        x ^= (x << 1) ^ (0x11B if x & 0x80 else 0)
        x &= 0xFF
    for i in range(255, 512):
        exp[i] = exp[i - 255]
    return exp, log


_EXP, _LOG = _build_tables()


def _mul(a: int, b: int) -> int:
    if a == 0 or b == 0:
        return 0
    return _EXP[_LOG[a] + _LOG[b]]


def _div(a: int, b: int) -> int:
    if b == 0:
        raise ZeroDivisionError
    if a == 0:
        return 0
    return _EXP[(_LOG[a] - _LOG[b]) % 255]


def split(secret: bytes, parts: int, threshold: int) -> list[bytes]:
    if not 2 <= threshold <= parts <= 255:
        raise FormatError("shamir threshold must be at least 2 and at most the number of key groups")
    if not secret:
        raise FormatError("cannot split an empty secret")
    xs = list(range(1, parts + 1))
    shares = [bytearray() for _ in range(parts)]
    for byte in secret:
        coeffs = [byte] + list(os.urandom(threshold - 1))
        for share, x in zip(shares, xs, strict=True):
            y = 0
            for c in reversed(coeffs):  # Horner
                y = _mul(y, x) ^ c
            share.append(y)
    for share, x in zip(shares, xs, strict=True):
        share.append(x)
    return [bytes(s) for s in shares]


def combine(shares: list[bytes]) -> bytes:
    if len(shares) < 2:
        raise FormatError("less than two shares cannot be combined")
    length = len(shares[0])
    if length < 2 or any(len(s) != length for s in shares):
        raise FormatError("all shares must have the same length")
    xs = [s[-1] for s in shares]
    if len(set(xs)) != len(xs):
        raise FormatError("duplicate share detected")
    secret = bytearray()
    for idx in range(length - 1):
        acc = 0
        for i, xi in enumerate(xs):
            num, den = 1, 1
            for j, xj in enumerate(xs):
                if i != j:
                    num = _mul(num, xj)
                    den = _mul(den, xi ^ xj)
            acc ^= _mul(shares[i][idx], _div(num, den))
        secret.append(acc)
    return bytes(secret)
