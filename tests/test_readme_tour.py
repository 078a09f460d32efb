"""README's tour, run as written against a fresh ``pelago serve --demo``: its examples cannot drift.

Every ``sh`` block of the tour runs in one bash, in order, with ``curl``
wrapped: each answer is checked against the comment under its command
(``# 201 {"id": 9, …}``: the status and every ``"key": literal`` written;
see tests/readme/check.py). A GET whose answer does not match yet is asked
again for a few seconds, since the demo server runs jobs (imports, event
deliveries) on its background thread.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECK = Path(__file__).resolve().parent / "readme" / "check.py"

WRAPPER = r'''
set -u
curl() {
  local expect="${EXPECT-}" tries=1 n code
  unset EXPECT
  case " $* " in *" -X "*|*" -F "*) ;; *) [ -n "$expect" ] && tries=50 ;; esac
  n=$(( $(cat "$LOG/count") + 1 )); echo $n > "$LOG/count"
  while :; do
    code=$(command curl -sS -o "$LOG/$n.body" -w '%{http_code}' "$@")
    if [ -z "$expect" ] || "$PY" "$CHECK" "$expect" "$code" "$LOG/$n.body" 2> "$LOG/$n.err"; then
      rm -f "$LOG/$n.err"; break
    fi
    tries=$((tries - 1)); [ $tries -le 0 ] && { printf '%s\n' "$*" > "$LOG/$n.cmd"; break; }
    sleep 0.1
  done
  cat "$LOG/$n.body"
}
'''


def tour_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    tour = text.split("## A short tour", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", tour, re.S)
    return [b for b in blocks if "export KEY=" not in b]  # the first block sets what the test sets


def with_expectations(block: str) -> str:
    """Prefix each curl command with ``EXPECT='<the comment under it>'``."""
    lines = block.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if re.match(r"\s*(\w+=\$\()?curl ", line):
            command = [line]
            while command[-1].rstrip().endswith("\\"):
                i += 1
                command.append(lines[i])
            comment: list[str] = []
            while i + 1 < len(lines) and lines[i + 1].startswith("#"):
                i += 1
                comment.append(lines[i][1:].strip())
            expect = " ".join(comment)
            expect = re.split(r"\s{2,}\(", expect)[0]  # drop a trailing "(sent again: …)" aside
            if expect and not line.lstrip().startswith(tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ")):
                quoted = expect.replace("'", "'\\''")
                command[0] = re.sub(r"curl ", f"EXPECT='{quoted}' curl ", command[0], count=1)
            out += command
        else:
            out.append(line)
        i += 1
    return "\n".join(out)


@pytest.mark.skipif(shutil.which("curl") is None or shutil.which("openssl") is None, reason="needs curl and openssl")
def test_the_readme_tour_runs_as_written(tmp_path, demo_servers):
    demo = demo_servers.get(pristine=True)  # the README shows the ids of a fresh demo
    log = tmp_path / "log"
    log.mkdir()
    (log / "count").write_text("0")
    script = WRAPPER + "\n".join(with_expectations(b) for b in tour_blocks())
    run = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**demo.env, "PELAGO": demo.base, "KEY": demo.key, "LOG": str(log),
             "PY": sys.executable, "CHECK": str(CHECK)},
    )
    failures = [
        f"{(log / f'{p.stem}.cmd').read_text().strip()}\n  {p.read_text().strip()}"
        for p in sorted(log.glob("*.err"), key=lambda p: int(p.stem))
    ]
    calls = int((log / "count").read_text())
    assert run.returncode == 0, run.stderr
    assert calls >= 15, f"only {calls} curl calls ran: {run.stderr}"
    assert not failures, "README tour drifted:\n" + "\n".join(failures)
