"""Writers for text formats meshctl generates from topology values.

Every TOML file and every YAML scalar meshctl emits (receptor.conf, imported
mesh.yml, Mermaid front matter) goes through here: values from mesh.yml and from
imported files are outside input, and a quote or a line break pasted into an
f-string adds keys or tables.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

import yaml

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


class Octal(int):
    """An int written in octal (``permissions: 0660``), as receptor's docs show it."""


# Plain strings, by reader; both used with fullmatch ("$" would allow a trailing
# newline) and neither allows ',', '#', '{' or a leading indicator.
# Go's yaml.v2 (receptor.conf): no trailing ':' ("k: X:" is not "X:").
_PLAIN_GO = re.compile(r"[A-Za-z0-9_/](?:[A-Za-z0-9_./:@\[\]-]*[A-Za-z0-9_./@\[\]-])?")
# yaml.v2 resolves any plain scalar that Go's ParseInt(s, 0, 64) or ParseFloat accepts
# (0x1f, 0b101, 0o17, 1_000, 1e3) and YAML 1.1 booleans: quote everything starting
# with a digit or a sign.
_RESERVED_GO = re.compile(r"^(?:y|n|yes|no|true|false|on|off|null|~|[-+.]?[0-9].*|\.inf|\.nan)$", re.I | re.S)
# PyYAML (mesh.yml): also in flow lists, so no '[' or ']'; ':' and ' ' only inside and
# never before a space (": " and " #" would end the scalar). Its resolver then says
# whether the text reads back as a string ("yes", "1e3", "2001-01-01" do not).
_PLAIN_PY = re.compile(r"[A-Za-z0-9_./~](?:[A-Za-z0-9_./~@-]|[: ](?=[A-Za-z0-9_./~@:-]))*")
_RESOLVER = yaml.resolver.Resolver()
_STR_TAG = "tag:yaml.org,2002:str"


@lru_cache(maxsize=8192)
def _plain_for_pyyaml(value: str) -> bool:
    # Cached: an imported mesh names the same hosts many times.
    return (_PLAIN_PY.fullmatch(value) is not None
            and _RESOLVER.resolve(yaml.ScalarNode, value, (True, False)) == _STR_TAG)


def yaml_scalar(value: Any, *, go: bool = False) -> str:
    """One YAML value on one line that reads back as ``value``, in a block mapping, a
    block list or a flow list: a string plain when its reader takes it as that very
    string, else :func:`yaml_string`. ``go=True`` for files Go's yaml.v2 reads
    (receptor.conf), which resolves more plain text as numbers; otherwise the reader
    is PyYAML (mesh.yml). Hand-rolled because PyYAML's pure-Python emitter
    dominated planning time for big meshes. Lists and mappings come out as JSON,
    which YAML reads too."""
    if type(value) is str:  # the common case first: a big mesh renders ~30 per node
        if go:
            plain = _PLAIN_GO.fullmatch(value) is not None and not _RESERVED_GO.match(value)
        else:
            plain = _plain_for_pyyaml(value)
        return value if plain else yaml_string(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Octal):
        return f"0{value:o}"
    if isinstance(value, (int, float)):
        return repr(value)
    if value is None:
        return "null"
    if isinstance(value, str):
        if go:
            plain = _PLAIN_GO.fullmatch(value) is not None and not _RESERVED_GO.match(value)
        else:
            plain = _plain_for_pyyaml(value)
        return value if plain else yaml_string(value)
    return json.dumps(value)


__all__ = ["Octal", "toml_comment", "toml_key", "toml_string", "toml_table", "toml_value", "yaml_scalar",
           "yaml_string"]
