"""Random hostile strings for property tests (no hypothesis package here): quotes,
backslashes, every kind of line break, NUL and other controls, syntax characters of
YAML, TOML, DOT and Mermaid, and characters outside the BMP."""

from __future__ import annotations

import random

HOSTILE = (
    ['"', "'", "\\", "\n", "\r", "\t", "\x00", "\x0b", "\x0c", "\x1b", "\x7f", "\x85", "\u2028", "\u2029",
     "\ufeff", "\u200b", "#", ":", "-", "[", "]", "{", "}", "|", ">", "<", "(", ")", ";", "&", "`", "%", "=",
     ",", "*", "!", "@", "?", "/", " ", ".", "~", "\U0001F600", "\U0001F4A9", "é", "ß", "\u00a0"]
    + [chr(c) for c in range(0x20)]
    + list("abcXYZ019")
    + ["- name: evil", "[[registry]]", "-->", "%%", "#quot;", "\\n", '\\"', "<br/>", "end", "]]", "}}",
       "---", "true", "0x1f", "null", "~"]
)


def hostile_strings(seed: int, count: int, max_parts: int = 12) -> list[str]:
    rng = random.Random(seed)
    out = ["", " ", "\n", '"', "\\", "\\\n", "a\\", "\U0001F600", "\u2028", "\x00"]
    while len(out) < count:
        out.append("".join(rng.choice(HOSTILE) for _ in range(rng.randint(1, max_parts))))
    return out
