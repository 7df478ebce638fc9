"""The TOML writer (meshctl.core.writers), read back with tomllib."""

from __future__ import annotations

import tomllib

import pytest
from hostile import hostile_strings

from meshctl.core.writers import toml_comment, toml_key, toml_string, toml_table, toml_value


def test_plain_values():
    assert toml_string("quay.io") == '"quay.io"'
    assert toml_value(True) == "true" and toml_value(5000) == "5000"
    assert toml_value(["a", 1, False]) == '["a", 1, false]'
    assert toml_key("location") == "location" and toml_key("a.b") == '"a.b"'


def test_a_quote_and_newline_stay_inside_the_string():
    evil = 'quay.io"\n[[registry]]\nlocation = "evil.example.com'
    text = "\n".join(toml_table(["registry"], {"prefix": evil, "insecure": False}, array=True)) + "\n"
    assert tomllib.loads(text) == {"registry": [{"prefix": evil, "insecure": False}]}
    assert len(text.splitlines()) == 3  # header and two keys: nothing more was started


def test_keys_and_table_names_are_quoted_when_needed():
    text = "\n".join(toml_table(["a]\n[b", "c d"], {"k = 1\nx": "v", "ok": 1})) + "\n"
    assert tomllib.loads(text) == {"a]\n[b": {"c d": {"k = 1\nx": "v", "ok": 1}}}


def test_lone_surrogates_and_unknown_types_are_refused():
    with pytest.raises(ValueError, match="lone surrogate"):
        toml_string("a\ud800b")
    with pytest.raises(TypeError):
        toml_value(1.5)  # type: ignore[arg-type]


def test_a_comment_is_one_printable_line():
    assert toml_comment("Managed by meshctl.") == "# Managed by meshctl."
    for bad in ("x\ny", "x\ry", "x\u2028y", "x\x00"):
        with pytest.raises(ValueError, match="one line"):
            toml_comment(bad)


def test_any_string_round_trips_through_tomllib():
    strings = hostile_strings(seed=12, count=4000)
    for s in strings:
        written = toml_string(s)
        assert len(written.splitlines()) == 1, repr(written)  # no line break of any kind
        assert tomllib.loads(f"k = {written}\n") == {"k": s}, repr(s)
        assert tomllib.loads(f"{toml_key(s)} = 1\n") == {s: 1}, repr(s)
