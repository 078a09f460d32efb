"""The curl examples of docs/*.md, run against a fresh ``pelago serve --demo``: they cannot drift either.

README's tour has its own test (tests/test_readme_tour.py); this one takes
every ``sh`` or ``console`` block with a ``curl`` in the other docs (bar the
tutorial, whose examples call the plugin the reader builds in it, which the
demo does not have). Each curl command runs
as written, through real ``curl``, with what the reader has in their shell:

* ``$PELAGO`` (``localhost:5000`` in some examples), ``$KEY`` and
  ``$ADMIN_KEY`` (the demo's admin key);
* the demo's own ids where an example names an id (a user, a team), and a
  channel made for the test where it writes ``ch_…`` with ``$SECRET``;
* the files the examples send (``leads.csv``, ``body.json``), made by the
  examples' own ``printf`` lines.

A GET whose answer does not match yet is asked again for up to 10 s (the
demo runs an import on its background thread).

An example must answer 2xx, and, where a comment under it shows the answer
(``# 201 {…}``), match it (tests/readme/check.py: the status and every
``"key": literal`` written). ``pelago`` CLI lines are not run here (the CLI
has tests/test_cli.py).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from .readme.check import problems

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("intake.md", "routing.md", "operations.md")


def examples(doc: str) -> list[tuple[str, str | None]]:
    """``(shell command, expected comment or None)`` of every curl (and its setup lines) in ``doc``, in order."""
    text = (ROOT / "docs" / doc).read_text(encoding="utf-8")
    out: list[tuple[str, str | None]] = []
    for kind, block in re.findall(r"```(sh|console)\n(.*?)```", text, re.S):
        if "curl " not in block:
            continue
        lines = block.splitlines()
        if kind == "console":  # commands after "$ ", the rest is output
            lines = [line[2:] if line.startswith("$ ") else ("" if not line.startswith(" ") else line)
                     for line in lines]
        i = 0
        while i < len(lines):
            line = lines[i]
            stripped = line.strip()
            if stripped.startswith(("curl ", "printf ", "SIG=", "SECRET=")):
                command = [line]
                while command[-1].rstrip().endswith("\\") or (
                        command[-1].count("'") % 2 == 1 and i + 1 < len(lines)):
                    i += 1
                    command.append(lines[i])
                comment = []
                while i + 1 < len(lines) and lines[i + 1].startswith("# "):
                    i += 1
                    comment.append(lines[i][2:].strip())
                expect = " ".join(comment)
                expected = expect if re.match(r"\d{3}\b", expect) else None
                out.append(("\n".join(command), expected if stripped.startswith("curl ") else None))
            i += 1
    return out


def call(base: str, key: str, method: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())  # type: ignore[no-any-return]


def test_every_doc_has_examples_here():
    for doc in DOCS:
        assert any(c.strip().startswith("curl ") for c, _ in examples(doc)), doc


@pytest.mark.skipif(shutil.which("curl") is None or shutil.which("openssl") is None, reason="needs curl and openssl")
def test_the_docs_curl_examples_run_as_written(tmp_path, demo_servers):
    demo = demo_servers.get()  # a used one will do: the examples read the ids they need from it
    base, key, env = demo.base, demo.key, demo.env
    users = call(base, key, "GET", "/api/v1/users?limit=200")["items"]
    rep = next(u for u in users if u["role"] == "rep")
    team = call(base, key, "GET", "/api/v1/teams")["items"][0]
    channel = call(base, key, "POST", "/api/v1/channels", {"name": "docs-test"})
    shell = {**env, "PELAGO": base, "KEY": key, "ADMIN_KEY": key}
    failures: list[str] = []
    ran = 0
    for doc in DOCS:
        for command, expected in examples(doc):
            runnable = (command.replace("localhost:5000", base).replace("http://http://", "http://")
                        .replace("ch_…", channel["key"]).replace("whsec_…", channel["secret"])
                        .replace("/api/v1/users/12", f"/api/v1/users/{rep['id']}")
                        .replace('"team_id": 4', f'"team_id": {team["id"]}')
                        # the README tour, on the same server before, made a channel of that name
                        .replace('"name": "own-site"', '"name": "own-site-docs"'))
            if runnable.lstrip().startswith("curl "):
                runnable = runnable.replace("curl ", "curl -sS -o answer.json -w '%{http_code}' ", 1)
            # A GET whose answer does not match yet is asked again for a while (at most 10 s):
            # the demo server runs jobs (an import) on its background thread.
            reads = bool(expected) and runnable.lstrip().startswith("curl ") and not re.search(
                r" -(X|F|d) ", runnable)
            deadline = time.monotonic() + (10 if reads else 0)
            while True:
                done = subprocess.run(["bash", "-c", runnable], cwd=tmp_path, env=shell, capture_output=True,
                                      text=True, timeout=60)
                answer_file = tmp_path / "answer.json"
                if not reads or time.monotonic() > deadline or (done.returncode == 0 and not problems(
                        expected or "", done.stdout.strip()[-3:], answer_file.read_text(encoding="utf-8"))):
                    break
            if done.returncode != 0:
                failures.append(f"{doc}: {command}\n  exit {done.returncode}: {done.stderr.strip()}")
                continue
            if not command.lstrip().startswith("curl "):
                shell.update(_assigned(runnable, tmp_path, shell))
                continue
            ran += 1
            status = done.stdout.strip()[-3:]
            answer = (tmp_path / "answer.json").read_text(encoding="utf-8")
            found = problems(expected, status, answer) if expected else (
                [] if status.startswith("2") else [f"status {status}: {answer[:300]}"])
            if found:
                failures.append(f"{doc}: {command}\n  " + "\n  ".join(found))
    assert ran >= 7, f"only {ran} examples ran"
    assert not failures, "docs examples drifted:\n" + "\n".join(failures)


def _assigned(command: str, cwd: Path, shell: dict[str, str]) -> dict[str, str]:
    """The variables a setup line (``SECRET=…``, ``SIG=$(…)``) sets, for the commands after it."""
    match = re.match(r"\s*([A-Z_]+)=", command)
    if not match:
        return {}
    name = match.group(1)
    value = subprocess.run(["bash", "-c", f"{command}\nprintf '%s' \"${name}\""], cwd=cwd, env=shell,
                           capture_output=True, text=True, timeout=30).stdout
    return {name: value}
