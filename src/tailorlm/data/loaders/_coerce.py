"""Raw input values -> typed values or a :class:`LoadError` that names the source field.

Loaders read loosely typed input (JSON values, CSV cells, one JSON object per
line); these helpers check and convert one value at a time so that an error says
``field 'overall': must be a number, got 'five'`` rather than a pydantic trace.

What this module leaves out: reading files and lines (``_io``) and mapping whole
units of input to records (each format's loader).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from tailorlm.data.loaders._errors import Where

__all__ = ["as_float", "as_int", "as_str", "build", "format_rating", "parse_json_line"]


def _show(value: Any, limit: int = 60) -> str:
    s = repr(value)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def build(cls: type[BaseModel], at: Where, names: Mapping[str, str] | None = None, /, **kwargs: Any) -> Any:
    """``cls(**kwargs)``, turning a pydantic ValidationError into a LoadError.

    ``names`` maps record fields to the source field they came from, so the error
    names what the user sees in their file (``overall``, not ``rating``).
    """
    try:
        return cls(**kwargs)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = err.get("loc") or ()
        rec_field = str(loc[0]) if loc else None
        src = (names or {}).get(rec_field, rec_field) if rec_field else None
        if len(loc) > 1 and src:
            src += "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[1:])
        msg = err.get("msg", "invalid value")
        if "input" in err and err.get("type") != "missing" and not isinstance(err["input"], dict):
            msg += f", got {_show(err['input'])}"
        raise at.error(msg, src) from None


def as_str(value: Any, at: Where, name: str, *, required: bool = True, empty_ok: bool = True) -> str | None:
    """A string field: ints are accepted (ids often are numbers), other types are errors."""
    if value is None or (isinstance(value, str) and not value.strip() and not empty_ok):
        if required:
            raise at.error("missing" if value is None else "must not be empty", name)
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise at.error(f"must be a string, got {_show(value)}", name)


def as_float(value: Any, at: Where, name: str, *, required: bool = True) -> float | None:
    """A number: JSON numbers or numeric strings; bools, NaN and text are errors."""
    if value is None or value == "":
        if required:
            raise at.error("missing", name)
        return None
    if isinstance(value, bool):
        raise at.error(f"must be a number, got {_show(value)}", name)
    if isinstance(value, int | float):
        out = float(value)
    elif isinstance(value, str):
        try:
            out = float(value.strip())
        except ValueError:
            raise at.error(f"must be a number, got {_show(value)}", name) from None
    else:
        raise at.error(f"must be a number, got {_show(value)}", name)
    if not math.isfinite(out):
        raise at.error(f"must be a finite number, got {_show(value)}", name)
    return out


def as_int(value: Any, at: Where, name: str, *, required: bool = True) -> int | None:
    """A whole number: as :func:`as_float`, and ``3.5`` is an error."""
    out = as_float(value, at, name, required=required)
    if out is None:
        return None
    if not out.is_integer():
        raise at.error(f"must be a whole number, got {_show(value)}", name)
    return int(out)


def format_rating(value: float) -> str:
    """``5.0 -> '5'``, ``3.5 -> '3.5'``: the target string of rating tasks."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def parse_json_line(line: str, at: Where) -> dict[str, Any]:
    """One JSON object from one line, or a LoadError naming the line and column."""
    try:
        obj = json.loads(line.rstrip("\r\n"))
    except json.JSONDecodeError as exc:
        raise at.error(f"bad JSON: {exc.msg} (column {exc.colno})") from None
    except RecursionError:
        raise at.error("bad JSON: nested too deeply") from None
    if not isinstance(obj, dict):
        raise at.error(f"expected a JSON object, got {type(obj).__name__}")
    return obj
