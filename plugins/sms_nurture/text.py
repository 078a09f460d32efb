"""Message text: template variables, rendering, the signature, segment counting, opt-out words.

Segments are counted as carriers bill them: a text of GSM-7 characters only is
one message up to 160 septets (the extension characters ``^{}\\[~]|€`` take
two), else 153 per segment; any other text is UCS-2, one message up to 70
UTF-16 units, else 67 per segment (an emoji outside the BMP takes two units).
The signature 【…】 is part of the text and counted.
"""

from __future__ import annotations

import math
import string
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: lead fields a template may name; ``{attr.KEY}`` names a lead attribute
VARIABLES = ("name", "owner_name", "source", "region", "product", "phone_tail", "stage")

GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXT = set("^{}\\[~]|€\f")

#: replies that opt a phone out, compared after NFKC (full-width to half-width), trimming and casefolding
OPT_OUT = frozenset({"t", "td", "退订", "r", "stop", "unsubscribe"})
_TRIM = " \t\r\n\u3000.。!！,，;；:：'\"“”‘’()（）[]【】"


def variables_of(body: str) -> list[str]:
    """The variable names ``body`` uses; ``ValueError`` for a malformed template (an unclosed brace)."""
    names = []
    for _, field, spec, conv in string.Formatter().parse(body):
        if field is None:
            continue
        if spec or conv or not field:
            raise ValueError("a variable is written {name}, without format or conversion")
        names.append(field)
    return names


def unknown_variables(body: str) -> list[str]:
    """The variables of ``body`` that are neither lead fields nor ``attr.KEY`` (``ValueError`` if malformed)."""
    return sorted({v for v in variables_of(body) if v not in VARIABLES and not _is_attr(v)})


def _is_attr(name: str) -> bool:
    key = name[5:]
    return name.startswith("attr.") and 0 < len(key) <= 100 and all(c.isalnum() or c in "_-" for c in key)


def lead_values(lead: Mapping[str, Any], owner_name: str | None) -> dict[str, str]:
    """The values the variables take for one lead (missing ones are empty)."""
    phone = lead.get("phone") or ""
    values = {
        "name": lead.get("name") or "", "owner_name": owner_name or "", "source": lead.get("source") or "",
        "region": lead.get("region") or "", "product": lead.get("product") or "", "phone_tail": phone[-4:],
        "stage": lead.get("stage") or "",
    }
    for key, value in (lead.get("attributes") or {}).items():
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            values[f"attr.{key}"] = str(value)
    return values


class _Values(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


def render(body: str, values: Mapping[str, str], signature: str = "") -> str:
    """``body`` with its variables filled in, after the tenant's signature 【…】 (if any)."""
    text = string.Formatter().vformat(body, (), _Values(values))
    return f"【{signature}】{text}" if signature else text


@dataclass(frozen=True)
class Count:
    encoding: str  # "GSM-7" | "UCS-2"
    characters: int
    units: int
    segments: int
    per_segment: int


def count(text: str) -> Count:
    """How many messages ``text`` is billed as (see the module's docstring)."""
    if all(c in GSM7 or c in GSM7_EXT for c in text):
        units = sum(2 if c in GSM7_EXT else 1 for c in text)
        single, multi, encoding = 160, 153, "GSM-7"
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, multi, encoding = 70, 67, "UCS-2"
    segments = 1 if units <= single else math.ceil(units / multi)
    return Count(encoding, len(text), units, segments, single if segments == 1 else multi)


def is_opt_out(reply: str) -> bool:
    """Whether a reply opts out: T, TD, 退订, R, STOP, UNSUBSCRIBE, in any case, width and padding."""
    return unicodedata.normalize("NFKC", reply).strip(_TRIM).casefold() in OPT_OUT
