"""The one serialisation of federation payloads (never pickle).

A payload is a ``dict`` with ``str`` keys whose values are JSON-like (``None``, ``bool``,
``int`` of any size, ``float``, ``str``, lists/tuples, dicts with ``str`` keys) plus ``bytes``
and numpy arrays of plain numeric dtypes. Big integers (Paillier ciphertexts) travel as
their magnitude bytes; a list of non-negative integers of similar size (a vector of
ciphertexts) travels as one fixed-width block. Every message starts with a magic and a
format version; decoding checks every length against a size bound before allocating, so a
malformed or hostile message is a :class:`CodecError`, never an arbitrary object.

>>> import numpy as np
>>> raw = encode({"n": 2**4096 + 1, "ids": ["a", "b"], "x": np.arange(3, dtype=np.int16)})
>>> back = decode(raw)
>>> back["n"] == 2**4096 + 1, back["ids"], back["x"].tolist()
(True, ['a', 'b'], [0, 1, 2])
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

from cityos.errors import CityOSError

__all__ = ["MAX_MESSAGE_BYTES", "CodecError", "decode", "encode"]

MAGIC = b"CFC"
VERSION = 1
#: Largest message accepted (encode and decode), bytes.
MAX_MESSAGE_BYTES = 1 << 31
MAX_DEPTH = 32
_DTYPES = (
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float32",
    "float64",
)

# one-byte type tags
_NONE, _TRUE, _FALSE, _INT, _NEGINT, _FLOAT, _STR, _BYTES = (
    b"N",
    b"T",
    b"F",
    b"I",
    b"J",
    b"D",
    b"S",
    b"B",
)
_LIST, _DICT, _ARRAY, _BIGVEC = b"L", b"M", b"A", b"V"


class CodecError(CityOSError, ValueError):
    """A payload that cannot be encoded, or bytes that are not a valid message."""


def _uvar(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _is_bigvec(seq: list[Any] | tuple[Any, ...]) -> bool:
    if len(seq) < 8:
        return False
    first = seq[0]
    if type(first) is not int and type(first).__name__ != "mpz":
        return False
    return all((type(v) is int or type(v).__name__ == "mpz") and v >= 0 for v in seq)


def _enc(v: Any, out: bytearray, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise CodecError(f"payload nested deeper than {MAX_DEPTH} levels")
    if v is None:
        out += _NONE
    elif v is True:
        out += _TRUE
    elif v is False:
        out += _FALSE
    elif isinstance(v, (int, np.integer)) or type(v).__name__ == "mpz":
        iv = int(v)
        tag = _INT if iv >= 0 else _NEGINT
        mag = abs(iv)
        b = mag.to_bytes((mag.bit_length() + 7) // 8, "little")
        out += tag + _uvar(len(b)) + b
    elif isinstance(v, (float, np.floating)):
        out += _FLOAT + struct.pack("<d", float(v))
    elif isinstance(v, str):
        b = v.encode("utf-8")
        out += _STR + _uvar(len(b)) + b
    elif isinstance(v, (bytes, bytearray, memoryview)):
        b = bytes(v)
        out += _BYTES + _uvar(len(b)) + b
    elif isinstance(v, np.ndarray):
        name = v.dtype.name
        if name not in _DTYPES:
            raise CodecError(f"numpy dtype {name!r} cannot cross a federation (allowed: {_DTYPES})")
        a = np.ascontiguousarray(v, dtype=v.dtype.newbyteorder("<"))
        nb = a.dtype.name.encode()
        out += _ARRAY + _uvar(len(nb)) + nb + _uvar(a.ndim)
        for d in a.shape:
            out += _uvar(d)
        out += a.tobytes()
    elif isinstance(v, (list, tuple)):
        if _is_bigvec(v):
            ints = [int(x) for x in v]
            width = (max(x.bit_length() for x in ints) + 7) // 8 or 1
            out += _BIGVEC + _uvar(len(ints)) + _uvar(width)
            out += b"".join(x.to_bytes(width, "little") for x in ints)
        else:
            out += _LIST + _uvar(len(v))
            for x in v:
                _enc(x, out, depth + 1)
    elif isinstance(v, Mapping):
        out += _DICT + _uvar(len(v))
        for k, x in v.items():
            if not isinstance(k, str):
                raise CodecError(f"payload keys must be str, got {type(k).__name__} {k!r}")
            kb = k.encode("utf-8")
            out += _uvar(len(kb)) + kb
            _enc(x, out, depth + 1)
    else:
        raise CodecError(f"a {type(v).__name__} cannot cross a federation (never pickled)")
    if len(out) > MAX_MESSAGE_BYTES:
        raise CodecError(f"message larger than {MAX_MESSAGE_BYTES} bytes")


def encode(payload: Mapping[str, Any]) -> bytes:
    """The bytes of ``payload`` (a mapping with ``str`` keys)."""
    if not isinstance(payload, Mapping):
        raise CodecError(f"a payload is a mapping, got {type(payload).__name__}")
    out = bytearray(MAGIC + bytes([VERSION]))
    _enc(payload, out, 0)
    return bytes(out)


class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.buf):
            raise CodecError(
                f"truncated message: {n} bytes wanted at offset {self.pos} of {len(self.buf)}"
            )
        b = self.buf[self.pos : self.pos + n]
        self.pos += n
        return b

    def uvar(self) -> int:
        n = shift = 0
        while True:
            if self.pos >= len(self.buf):
                raise CodecError("truncated length field")
            b = self.buf[self.pos]
            self.pos += 1
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                return n
            shift += 7
            if shift > 63:
                raise CodecError(f"length field too long at offset {self.pos}")

    def length(self) -> int:
        n = self.uvar()
        if n > len(self.buf) - self.pos:
            raise CodecError(f"length {n} at offset {self.pos} exceeds the message")
        return n


def _dec(r: _Reader, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise CodecError(f"message nested deeper than {MAX_DEPTH} levels")
    tag = r.take(1)
    if tag == _NONE:
        return None
    if tag == _TRUE:
        return True
    if tag == _FALSE:
        return False
    if tag in (_INT, _NEGINT):
        mag = int.from_bytes(r.take(r.length()), "little")
        return mag if tag == _INT else -mag
    if tag == _FLOAT:
        return struct.unpack("<d", r.take(8))[0]
    if tag == _STR:
        try:
            return r.take(r.length()).decode("utf-8")
        except UnicodeDecodeError as e:
            raise CodecError(f"invalid UTF-8 string at offset {r.pos}") from e
    if tag == _BYTES:
        return r.take(r.length())
    if tag == _ARRAY:
        name = r.take(r.length()).decode("ascii", "replace")
        if name not in _DTYPES:
            raise CodecError(f"numpy dtype {name!r} is not allowed")
        ndim = r.uvar()
        if ndim > 32:
            raise CodecError(f"array with {ndim} dimensions")
        shape = tuple(r.uvar() for _ in range(ndim))
        dt = np.dtype(name).newbyteorder("<")
        count = 1
        for dim in shape:
            count *= dim
        nbytes = count * dt.itemsize
        if nbytes > len(r.buf) - r.pos:
            raise CodecError(f"array of shape {shape} exceeds the message")
        return np.frombuffer(r.take(nbytes), dtype=dt).reshape(shape).astype(np.dtype(name))
    if tag == _BIGVEC:
        n = r.uvar()
        width = r.uvar()
        if width == 0 or n * width > len(r.buf) - r.pos:
            raise CodecError(f"integer vector of {n} × {width} bytes exceeds the message")
        blob = r.take(n * width)
        fb = int.from_bytes
        return [fb(blob[i : i + width], "little") for i in range(0, n * width, width)]
    if tag == _LIST:
        n = r.length()  # every item takes at least one byte
        return [_dec(r, depth + 1) for _ in range(n)]
    if tag == _DICT:
        n = r.length()
        d: dict[str, Any] = {}
        for _ in range(n):
            k = r.take(r.length()).decode("utf-8", "strict")
            d[k] = _dec(r, depth + 1)
        return d
    raise CodecError(f"unknown type tag {tag!r} at offset {r.pos - 1}")


def decode(raw: bytes) -> dict[str, Any]:
    """The payload encoded in ``raw``; :class:`CodecError` for anything else."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise CodecError(f"message larger than {MAX_MESSAGE_BYTES} bytes")
    if len(raw) < 5 or raw[:3] != MAGIC:
        raise CodecError("not a CityOS federation message (bad magic)")
    if raw[3] != VERSION:
        raise CodecError(f"federation message format version {raw[3]}, this build reads {VERSION}")
    r = _Reader(bytes(raw))
    r.pos = 4
    try:
        out = _dec(r, 0)
    except (UnicodeDecodeError, ValueError, OverflowError) as e:
        if isinstance(e, CodecError):
            raise
        raise CodecError(f"malformed message: {e}") from e
    if r.pos != len(r.buf):
        raise CodecError(f"{len(r.buf) - r.pos} trailing bytes after the payload")
    if not isinstance(out, dict):
        raise CodecError("a message's top level must be a mapping")
    return out
