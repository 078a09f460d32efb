"""Aliyun's RPC request signature, version 1.0, as documented ("签名机制", dysmsapi):

1. the request's parameters (without ``Signature``), sorted by name, each name
   and value percent-encoded as RFC 3986 (UTF-8; ``A-Za-z0-9-_.~`` kept, a
   space as ``%20``, ``*`` as ``%2A``), joined ``name=value`` with ``&``: the
   canonicalised query;
2. ``StringToSign = METHOD & percent("/") & percent(canonicalised query)``;
3. ``Signature = base64(HMAC-SHA1(AccessKeySecret + "&", StringToSign))``,
   sent as one more parameter.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from urllib.parse import quote


def percent(value: str) -> str:
    return quote(str(value), safe="-_.~")


def canonical(params: Mapping[str, str]) -> str:
    return "&".join(f"{percent(k)}={percent(v)}" for k, v in sorted(params.items()))


def string_to_sign(method: str, params: Mapping[str, str]) -> str:
    return f"{method.upper()}&{percent('/')}&{percent(canonical(params))}"


def signature(secret: str, method: str, params: Mapping[str, str]) -> str:
    digest = hmac.new(f"{secret}&".encode(), string_to_sign(method, params).encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def signed_query(secret: str, method: str, params: Mapping[str, str]) -> str:
    """The query string to send: the parameters and their ``Signature``."""
    return canonical({**params, "Signature": signature(secret, method, params)})
