"""A real receptor for the lab, built from the Go module proxy (never a download of a
prebuilt binary): the newest release tag that builds, cached by version with its sha256.

When Go is missing or the proxy refuses the module, `obtain` says so in one line and
returns no binary: the lab then runs degraded and says what it could not prove.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from labkit.image import cache_dir
from labkit.locks import locked

MODULE = "github.com/ansible/receptor"
MAIN = "./cmd/receptor-cl"
VERSION_VAR = f"{MODULE}/internal/version.Version"
_TAG = re.compile(r"^v(\d+)\.(\d+)\.(\d+)$")  # releases only: no pre-releases or pseudo-versions
LIST_TIMEOUT = 120
BUILD_TIMEOUT = 900
MAX_TRIES = 3  # newest tags tried before giving up


@dataclass
class Receptor:
    path: Path | None
    version: str = ""
    sha256: str = ""
    source: str = ""  # where it came from, or why there is none

    def summary(self) -> str:
        if self.path is None:
            return f"receptor: none ({self.source})"
        return f"receptor {self.version} sha256 {self.sha256} ({self.source})"


def _go_env() -> dict[str, str]:
    return dict(os.environ, CGO_ENABLED="0", GOFLAGS="-buildvcs=false")


def _first_error(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " ".join(lines[:2])[:400] if lines else "no output"


def release_tags(go: str) -> tuple[list[str], str]:
    """Release tags on the module proxy, newest first; or ([], the proxy's exact answer)."""
    try:
        r = subprocess.run([go, "list", "-m", "-versions", "-json", MODULE], capture_output=True, text=True,
                           timeout=LIST_TIMEOUT, env=_go_env(), cwd=tempfile.gettempdir())
    except subprocess.TimeoutExpired:
        return [], f"go list -m -versions {MODULE}: no answer in {LIST_TIMEOUT}s"
    if r.returncode != 0:
        return [], f"go list -m -versions {MODULE}: {_first_error(r.stderr)}"
    try:
        versions = json.loads(r.stdout).get("Versions") or []
    except ValueError:
        return [], f"go list -m -versions {MODULE}: unreadable answer"
    tags = [v for v in versions if _TAG.match(v)]
    tags.sort(key=lambda v: tuple(int(x) for x in _TAG.match(v).groups()), reverse=True)
    return tags, "" if tags else f"the module proxy lists no release tag of {MODULE}"


def _build(go: str, tag: str, out: Path, log) -> str:
    """Build receptor ``tag`` into ``out``; '' on success, else the error."""
    version = tag.removeprefix("v")
    ldflags = f"-X {VERSION_VAR}={version}"
    with tempfile.TemporaryDirectory(prefix="receptor-build-") as tmp:
        env = dict(_go_env(), GOBIN=tmp)
        r = subprocess.run([go, "install", "-ldflags", ldflags, f"{MODULE}/cmd/receptor-cl@{tag}"],
                           capture_output=True, text=True, timeout=BUILD_TIMEOUT, env=env, cwd=tmp)
        built = Path(tmp) / "receptor-cl"
        if r.returncode != 0 and "replace" in r.stderr:
            # go install refuses modules whose go.mod has replace directives: build the module's own tree.
            log(f"lab: receptor {tag} has replace directives; building from go mod download")
            d = subprocess.run([go, "mod", "download", "-json", f"{MODULE}@{tag}"], capture_output=True, text=True,
                               timeout=BUILD_TIMEOUT, env=_go_env(), cwd=tmp)
            if d.returncode != 0:
                return f"go mod download {MODULE}@{tag}: {_first_error(d.stdout + d.stderr)}"
            src = Path(tmp) / "src"
            shutil.copytree(json.loads(d.stdout)["Dir"], src)
            for p in src.rglob("*"):
                p.chmod(p.stat().st_mode | 0o200)
            r = subprocess.run([go, "build", "-ldflags", ldflags, "-o", str(built), MAIN], capture_output=True,
                               text=True, timeout=BUILD_TIMEOUT, env=_go_env(), cwd=src)
        if r.returncode != 0:
            return f"go build {MODULE}@{tag}: {_first_error(r.stderr)}"
        v = subprocess.run([str(built), "--version"], capture_output=True, text=True, timeout=30)
        if version not in v.stdout + v.stderr:
            return f"built receptor {tag} reports {(v.stdout + v.stderr).strip()[:80]!r}, not {version}"
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp_out = out.with_suffix(".tmp")
        shutil.copyfile(built, tmp_out)
        tmp_out.chmod(0o755)
        os.replace(tmp_out, out)
    return ""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def obtain(log=print, pin: str | None = None) -> Receptor:
    """The lab's receptor: ``pin`` (a tag such as v1.6.9) or the newest release tag that builds."""
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if go is None:
        return Receptor(None, source="Go is not installed (install Go, or pass --receptor-binary)")
    if pin:
        tags, why = [pin], ""
    else:
        tags, why = release_tags(go)
    if not tags:
        return Receptor(None, source=why)
    root = cache_dir() / "receptor"
    root.mkdir(parents=True, exist_ok=True)
    errors = []
    with locked(root, timeout=BUILD_TIMEOUT * MAX_TRIES):
        for tag in tags[:MAX_TRIES]:
            binary = root / tag / "receptor"
            record = root / tag / "sha256"
            if binary.exists() and record.exists() and record.read_text().strip() == _sha256(binary):
                return Receptor(binary, tag.removeprefix("v"), _sha256(binary), f"lab cache {binary}")
            log(f"lab: building receptor {tag} from the Go module proxy ({MODULE})")
            err = _build(go, tag, binary, log)
            if not err:
                digest = _sha256(binary)
                record.write_text(digest + "\n")
                return Receptor(binary, tag.removeprefix("v"), digest, f"built from {MODULE}@{tag}, cached at {binary}")
            errors.append(err)
    return Receptor(None, source="; ".join(errors))
