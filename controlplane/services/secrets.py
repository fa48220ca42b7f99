"""Bearer secrets (API and enrolment tokens): made once, shown once, stored as SHA-256.

Tokens are 32 random bytes, so a fast unsalted hash is enough (there is no
dictionary to attack) and keeps per-request authentication one indexed lookup.
The first characters are kept in clear as ``prefix`` so people can tell
tokens apart in listings.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets as _random

API_PREFIX = "a4c_"
ENROLMENT_PREFIX = "a4ce_"
SHOWN_CHARS = 8


@dataclasses.dataclass(frozen=True)
class Secret:
    token: str
    hash: str
    prefix: str


def new(kind_prefix: str = API_PREFIX) -> Secret:
    token = kind_prefix + _random.token_urlsafe(32)
    return Secret(token=token, hash=digest(token), prefix=token[: len(kind_prefix) + SHOWN_CHARS])


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
