"""Avro's zig-zag varints and length-prefixed values, read with bounds checks.

Readers raise ``ValueError`` with the problem (a truncated buffer shows up as ``IndexError``);
lengths are checked against the bytes left before anything is sliced, so a length claiming
gigabytes in a 20-byte message fails at once without allocating.
"""

from __future__ import annotations

LONG_MIN = -(1 << 63)
LONG_MAX = (1 << 63) - 1
INT_MIN = -(1 << 31)
INT_MAX = (1 << 31) - 1


def write_long(value: int, out: bytearray) -> None:
    """Append ``value`` (a signed 64-bit int) as a zig-zag varint."""
    if not LONG_MIN <= value <= LONG_MAX:
        raise ValueError(f"{value} does not fit an Avro long")
    n = ((value << 1) ^ (value >> 63)) & 0xFFFFFFFFFFFFFFFF
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def read_long(buf: bytes, pos: int) -> tuple[int, int]:
    """The zig-zag varint at ``pos`` and the position after it."""
    b = buf[pos]
    if b < 0x80:
        return (b >> 1) ^ -(b & 1), pos + 1
    n = b & 0x7F
    shift = 7
    pos += 1
    while True:
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")
    if n >> 64:
        raise ValueError("varint does not fit an Avro long")
    return (n >> 1) ^ -(n & 1), pos


def read_int(buf: bytes, pos: int) -> tuple[int, int]:
    """The zig-zag varint at ``pos``, checked to fit an Avro int, and the position after it."""
    value, pos = read_long(buf, pos)
    if not INT_MIN <= value <= INT_MAX:
        raise ValueError(f"{value} does not fit an Avro int")
    return value, pos


def read_bytes(buf: bytes, pos: int) -> tuple[bytes, int]:
    """The length-prefixed bytes at ``pos`` and the position after them."""
    size, pos = read_long(buf, pos)
    if size < 0:
        raise ValueError(f"negative length {size}")
    end = pos + size
    if end > len(buf):
        raise ValueError(f"length {size} at position {pos} runs past the end ({len(buf)} bytes)")
    return buf[pos:end], end


def read_string(buf: bytes, pos: int) -> tuple[str, int]:
    """The length-prefixed UTF-8 string at ``pos`` and the position after it."""
    raw, pos = read_bytes(buf, pos)
    return raw.decode("utf-8"), pos


def write_bytes(value: bytes, out: bytearray) -> None:
    """Append ``value`` with its length."""
    write_long(len(value), out)
    out += value
