"""Writers for text formats meshctl generates from topology values.

Every TOML file meshctl emits goes through here (and YAML strings outside
receptor.conf): values from mesh.yml are outside
input, and a quote or a line break pasted into an f-string adds keys or tables.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")  # fullmatch: "$" would allow a trailing "\n"
_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}

TomlValue = str | bool | int | list


def toml_string(value: str) -> str:
    """A TOML basic string (``"..."``) that reads back as ``value``.

    Quotes, backslashes and every character that is not printable (control
    characters, U+2028, U+0085, ...) are escaped, so the result is one line.
    ValueError for lone surrogates: TOML strings are Unicode scalar values.
    """
    if not isinstance(value, str):
        raise TypeError(f"toml_string needs a str, not {type(value).__name__}")
    out = []
    for ch in value:
        code = ord(ch)
        if 0xD800 <= code <= 0xDFFF:
            raise ValueError(f"{value!r}: a lone surrogate cannot be written to TOML")
        if ch in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04X}")
        else:
            out.append(f"\\U{code:08X}")
    return '"' + "".join(out) + '"'


def toml_key(key: str) -> str:
    """A key: bare when TOML allows it, else quoted."""
    return key if _BARE_KEY.fullmatch(key) else toml_string(key)


def toml_value(value: TomlValue) -> str:
    # bool before int: bool is an int subclass.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML writer for {type(value).__name__}")


def toml_comment(text: str) -> str:
    """``# text``; ValueError unless ``text`` is one printable line (a line break
    would end the comment and start TOML)."""
    if not text.isprintable():
        raise ValueError(f"{text!r}: a TOML comment must be one line of printable text")
    return f"# {text}"


def toml_table(name: Iterable[str], items: Mapping[str, TomlValue], array: bool = False) -> list[str]:
    """Lines of one table: ``[a.b]`` (or ``[[a.b]]`` for an array of tables) and its keys."""
    header = ".".join(toml_key(part) for part in name)
    lines = [f"[[{header}]]" if array else f"[{header}]"]
    lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in items.items()]
    return lines


def yaml_string(value: str) -> str:
    """A YAML double-quoted scalar on one line that reads back as ``value``: quotes,
    backslashes and every non-printable character (line breaks of all kinds, NUL,
    lone surrogates) escaped; characters outside the BMP as ``\\U`` (a JSON-style
    surrogate pair would read back as two lone surrogates)."""
    out = []
    for ch in value:
        code = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch.isprintable() and not 0xD800 <= code <= 0xDFFF:
            out.append(ch)
        elif code <= 0xFF:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


__all__ = ["toml_comment", "toml_key", "toml_string", "toml_table", "toml_value", "yaml_string"]
