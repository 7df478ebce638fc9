"""How the lab picks and caches the receptor it builds (lab/labkit/receptor.py). The
go command is replaced by a script that answers like the module proxy would."""

from __future__ import annotations

import json

from labkit import receptor as LR


def fake_go(tmp_path, stdout="", stderr="", rc=0):
    go = tmp_path / "go"
    (tmp_path / "out").write_text(stdout)
    (tmp_path / "err").write_text(stderr)
    go.write_text(f"#!/bin/sh\ncat {tmp_path / 'out'}; cat {tmp_path / 'err'} >&2; exit {rc}\n")
    go.chmod(0o755)
    return str(go)


def test_release_tags_newest_first_without_prereleases(tmp_path):
    versions = ["v1.4.9", "v1.10.0", "v1.6.9", "v1.7.0-rc1", "v0.0.0-20240101000000-abcdefabcdef", "v1.6.10"]
    go = fake_go(tmp_path, json.dumps({"Path": LR.MODULE, "Versions": versions}))
    assert LR.release_tags(go) == (["v1.10.0", "v1.6.10", "v1.6.9", "v1.4.9"], "")


def test_a_refusing_proxy_is_reported_in_its_own_words(tmp_path):
    words = "go: module github.com/ansible/receptor: reading https://proxy.example/@v/list: 403 Forbidden"
    go = fake_go(tmp_path, stderr=words + "\n\tserver response: This module version is not available.\n", rc=1)
    tags, why = LR.release_tags(go)
    assert tags == [] and "403 Forbidden" in why and "This module version is not available." in why


def test_a_cached_build_is_used_only_while_its_digest_holds(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHCTL_LAB_CACHE", str(tmp_path / "cache"))
    built = []

    def build(go, tag, out, log):
        built.append(tag)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(b"binary " + tag.encode())
        return ""

    monkeypatch.setattr(LR, "_build", build)
    monkeypatch.setattr(LR.shutil, "which", lambda name: "/bin/true")
    first = LR.obtain(log=lambda *_: None, pin="v1.6.9")
    again = LR.obtain(log=lambda *_: None, pin="v1.6.9")
    assert built == ["v1.6.9"] and first.sha256 == again.sha256 and "lab cache" in again.source
    first.path.write_bytes(b"tampered")
    LR.obtain(log=lambda *_: None, pin="v1.6.9")
    assert built == ["v1.6.9", "v1.6.9"]
