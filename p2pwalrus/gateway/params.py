"""Query parameters read strictly: booleans and bounded integers, a 400 for anything else.
"""

from __future__ import annotations

import re

from .asgi import HTTPError


def bool_param(query: dict, name: str) -> bool | None:
    if name not in query:
        return None
    value = query[name].strip().lower()
    if value in ("true", "1", "yes", ""):
        return True
    if value in ("false", "0", "no"):
        return False
    raise HTTPError(400, f"{name} must be true or false, got {query[name]!r}")


def int_param(query: dict, name: str, default: int | None = None, minimum: int = 0) -> int:
    if name not in query:
        if default is None:
            raise HTTPError(400, f"missing query parameter {name}")
        return default
    text = query[name].strip()
    if not re.fullmatch(r"-?[0-9]{1,18}", text, re.ASCII):
        raise HTTPError(400, f"{name} must be an integer, got {query[name][:40]!r}")
    value = int(text)
    if value < minimum:
        raise HTTPError(400, f"{name} must be at least {minimum}, got {value}")
    return value
