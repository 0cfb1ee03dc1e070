"""Small C/C++ literal writers for the generated TFLite Micro sources."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from search.errors import ExportError


def c_bytes(data: bytes, per_line: int = 12, indent: str = "    ") -> str:
    """``data`` as comma-separated hex bytes (``0x1c, 0x00, ...``), ``per_line`` to a line."""
    lines = []
    for start in range(0, len(data), per_line):
        chunk = data[start : start + per_line]
        lines.append(indent + ", ".join(f"0x{b:02x}" for b in chunk) + ",")
    return "\n".join(lines)


def c_float(value: float) -> str:
    """A float32 literal that reads back to exactly the same float32 (``0.00392156886f``)."""
    v = float(np.float32(value))
    if not math.isfinite(v):
        raise ExportError(f"cannot write a non-finite float ({v}) into a C source")
    text = f"{v:.9g}"
    if not any(c in text for c in ".e"):
        text += ".0"
    return text + "f"


def c_floats(values: Iterable[float], per_line: int = 8, indent: str = "    ") -> str:
    """Comma-separated float32 literals, ``per_line`` to a line."""
    items = [c_float(v) for v in values]
    return "\n".join(indent + ", ".join(items[i : i + per_line]) + "," for i in range(0, len(items), per_line))


def c_string(text: str) -> str:
    """A double-quoted C string literal (ASCII; other characters become ``\\x`` escapes)."""
    out = []
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif 32 <= ord(ch) < 127:
            out.append(ch)
        else:
            out.extend(f'\\x{b:02x}""' for b in ch.encode("utf-8"))
    return '"' + "".join(out) + '"'


def c_ints(values: Sequence[int]) -> str:
    """``{1, 8, 8, 1}``-style initialiser contents: ``1, 8, 8, 1``."""
    return ", ".join(str(int(v)) for v in values)


def c_comment(text: str) -> str:
    """``text`` made safe inside a ``//`` comment (one line, no trailing backslash)."""
    return " ".join(text.split()).rstrip("\\")
