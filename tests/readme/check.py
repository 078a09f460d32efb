"""Does a curl answer match the README's comment under it? ``check.py EXPECTED STATUS BODY_FILE``; exit 0 if so.

The comment is ``# [STATUS] {json with …}``: the status (200 when absent)
must match, and every ``"key": literal`` pair written in it must occur
somewhere in the answer's JSON (``…`` stands for whatever else is there).
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

PAIR = re.compile(r'"([^"\\]+)":\s*("(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?|true|false|null)(?=\s*[,}\]])')


def pairs(value: Any) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        for k, v in value.items():
            out.append((k, v))
            out += pairs(v)
    elif isinstance(value, list):
        for v in value:
            out += pairs(v)
    return out


def problems(expected: str, status: str, body: str) -> list[str]:
    text = expected.strip()
    match = re.match(r"(\d{3})\b\s*(.*)", text, re.S)
    want_status, rest = (match.group(1), match.group(2)) if match else ("200", text)
    out = [] if status == want_status else [f"status {status}, the README says {want_status}"]
    try:
        got = pairs(json.loads(body)) if body.strip() else []
    except ValueError:
        return out + [f"the answer is not JSON: {body[:200]!r}"]
    for key, literal in PAIR.findall(rest):
        if "…" in literal:
            continue
        value = json.loads(literal)
        if (key, value) not in got:
            seen = [v for k, v in got if k == key][:3]
            out.append(f'"{key}": {literal} not in the answer (it has {key} = {seen})')
    return out


if __name__ == "__main__":
    expected, status, body_file = sys.argv[1:4]
    with open(body_file, encoding="utf-8") as f:
        found = problems(expected, status, f.read())
    for p in found:
        print(p, file=sys.stderr)
    sys.exit(1 if found else 0)
