"""One way to show a pydantic ValidationError: every bad field on its own line."""

from __future__ import annotations

from pydantic import ValidationError


def describe_errors(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: {exc.error_count()} invalid value(s):"]
    for err in exc.errors():
        where = ".".join(str(x) for x in err["loc"]) or "(top level)"
        lines.append(f"  - {where}: {err['msg']}")
    return "\n".join(lines)
