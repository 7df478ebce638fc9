"""The apply script: one POSIX sh script per round trip that runs a host's changes,
saves what they overwrite and restores it when a step fails."""

from __future__ import annotations

import shlex

from meshctl.core.ops import Change, Cmd

_ROLLBACK = r"""
_bk() {
  mkdir -p "$_rb" && chmod 700 "$_rb" || return 1
  if [ -f "$_rb/.paths" ] && grep -qxF "$1" "$_rb/.paths"; then return 0; fi
  n=$(cat "$_rb/.paths" 2>/dev/null | wc -l)
  if [ -e "$1" ]; then cp -p "$1" "$_rb/$n" || return 1; fi
  printf '%s
' "$1" >> "$_rb/.paths"
}
_restore() {
  [ -f "$_rb/.paths" ] || return 0
  n=0
  while IFS= read -r p; do
    if [ -e "$_rb/$n" ]; then cp -p "$_rb/$n" "$p"; else rm -f "$p"; fi
    n=$((n+1))
  done < "$_rb/.paths"
  echo "meshctl: restored $n file(s) changed by this run"
  if [ -n "$_svc" ]; then systemctl daemon-reload; systemctl restart "$_svc" && echo "meshctl: restarted $_svc with them"; fi
}
_finish() {
  _rc=$?
  if [ -n "$_tmp" ]; then rm -f "$_tmp"; fi
  if [ -n "$_stage" ]; then rm -rf "$_stage"; fi
  if [ "$_rc" -ne 0 ]; then _restore; rm -rf "$_rb"; elif [ "$_final" = 1 ]; then rm -rf "$_rb"; fi
}
"""


# One apply at a time per host: a killed run's script may still be finishing its step
# (apt holding its lock, say), and a rerun must wait for it, not race it. Rollback
# directories of other runs are from runs that died: their files were restored or the
# next plan redoes them.
HOST_STATE_DIR = "/var/lib/meshctl"  # on nodes: rollback copies and the apply lock
_LOCK = (
    "if mkdir -p STATE 2>/dev/null && [ -w STATE ]; then "
    "exec 9>>STATE/apply.lock; "
    "if command -v flock >/dev/null 2>&1 && ! flock -w 300 9; then "
    "echo 'meshctl: another meshctl run has held STATE/apply.lock for 300s'; _fail STEP 75; fi; "
    'for d in STATE/rollback/*; do if [ -d "$d" ] && [ "$d" != "$_rb" ]; then rm -rf "$d"; fi; done; '
    "fi"
)


_WAIT_FOR_APPLY = ("if [ -w STATE/apply.lock ] && command -v flock >/dev/null 2>&1; then "
                   "flock -w 300 STATE/apply.lock true; fi\n")


def render_apply_script(changes: list[Change] | list[tuple[int, list[Cmd]]], boundary: str,
                        stage: str | None = None, run_id: str = "0", final: bool = True) -> str:
    """One POSIX sh script for the given steps (changes, or (index, commands) pairs).
    Every command's stdin is /dev/null or its own heredoc, so nothing reads the rest of
    the script; a failing command stops the run and reports its step; a trap removes
    a half-written temporary file."""
    steps = [(i, c.commands) if isinstance(c, Change) else c for i, c in enumerate(changes)]
    lines = [
        "set -u",
        "_tmp=",
        "_svc=",
        f"_stage={shlex.quote(stage) if stage else ''}",
        # Saved copies of files this run changes; kept across the round trips of one
        # run, restored if any step fails (a half-applied change is rolled back).
        f"_rb={HOST_STATE_DIR}/rollback/{run_id}",
        f"_final={1 if final else 0}",
        _ROLLBACK,
        "trap _finish EXIT",
        # sshd signals nothing when meshctl dies: the script learns it from a write to the
        # closed pipe (SIGPIPE), and must still run _finish (restore, remove its directories).
        "_gone() { trap '' PIPE HUP INT TERM; exec >/dev/null 2>&1; exit 1; }",
        "trap _gone PIPE HUP INT TERM",
        f"_fail() {{ printf '\\n%s fail %s %s\\n' '{boundary}' \"$1\" \"$2\"; exit 1; }}",
    ]
    for n, (i, commands) in enumerate(steps):
        lines.append(f"printf '%s step {i}\\n' '{boundary}'")
        if n == 0:
            lines.append(_LOCK.replace("STEP", str(i)).replace("STATE", HOST_STATE_DIR))
        for cmd in commands:
            lines.extend(_render_cmd(cmd, i, boundary))
    lines.append(f"printf '%s done\\n' '{boundary}'")
    return "\n".join(lines) + "\n"


def _render_cmd(cmd: Cmd, step: int, boundary: str) -> list[str]:
    if cmd.stdin is None:
        if cmd.line.startswith("_tmp="):  # assignments must run in this shell
            return [f"{cmd.line} || _fail {step} $?"]
        body = cmd.line.rstrip().rstrip(";")
        if "\n" in body:  # a multi-line script: its own lines, then the closing brace
            return ["{", body, f"}} </dev/null 2>&1 || _fail {step} $?"]
        return [f"{{ {body} ; }} </dev/null 2>&1 || _fail {step} $?"]
    delim = f"MESHCTL_{boundary[-16:].upper()}_EOF"
    body = cmd.stdin if cmd.stdin.endswith("\n") else cmd.stdin + "\n"
    return [f"{{ {cmd.line} ; }} 2>&1 <<'{delim}' || _fail {step} $?", body.rstrip("\n"), delim]


def wait_for_apply() -> str:
    """Script lines that wait for a still-running apply of a killed meshctl."""
    return _WAIT_FOR_APPLY.replace("STATE", HOST_STATE_DIR)
