"""`{{name}}` placeholders: parsing once per text, substitution many times.

Only substitution: a placeholder is a bare variable name (letters, digits, underscore; not starting
with a digit), spaces allowed inside the braces. No attribute access, filters or logic. A text is
compiled once into a tuple of literal strings and variable names (cached by text), so rendering a
thousand entries is a join over that tuple with no regular expression at all.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

_NAME = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*")
OPEN, CLOSE = "{{", "}}"


class PlaceholderError(ValueError):
    """A text whose braces do not form valid placeholders; `position` is 1-based."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.position = position


@dataclass(frozen=True)
class Variable:
    name: str


@dataclass(frozen=True)
class Compiled:
    parts: tuple[str | Variable, ...]
    variables: tuple[str, ...]  # distinct names, in order of first appearance

    def substitute(self, values: Mapping[str, str], *, escape: bool = False) -> str:
        """The text with each variable replaced; a name absent from `values` stays as `{{name}}`."""
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, Variable):
                value = values.get(part.name)
                if value is None:
                    out.append(f"{OPEN}{part.name}{CLOSE}")
                else:
                    out.append(html.escape(value) if escape else value)
            else:
                out.append(part)
        return "".join(out)


@lru_cache(maxsize=4096)
def compile_text(text: str) -> Compiled:
    """Parses `text`; raises PlaceholderError naming the position of the first bad brace."""
    parts: list[str | Variable] = []
    names: dict[str, None] = {}
    cursor = 0
    while True:
        start = text.find(OPEN, cursor)
        literal_end = len(text) if start == -1 else start
        stray = text.find(CLOSE, cursor, literal_end)
        if stray != -1:
            raise PlaceholderError(f"'}}}}' at position {stray + 1} has no matching '{{{{'.", stray + 1)
        if start == -1:
            if cursor < len(text):
                parts.append(text[cursor:])
            break
        if start > cursor:
            parts.append(text[cursor:start])
        end = text.find(CLOSE, start + len(OPEN))
        if end == -1:
            raise PlaceholderError(f"'{{{{' at position {start + 1} is never closed with '}}}}'.", start + 1)
        inner = text[start + len(OPEN) : end]
        match = _NAME.fullmatch(inner)
        if match is None:
            raise PlaceholderError(
                f"'{{{{{inner}}}}}' at position {start + 1} is not a placeholder: use {{{{name}}}} with a plain "
                "variable name (letters, digits, underscore); no logic or attribute access.",
                start + 1,
            )
        name = match.group(1)
        names.setdefault(name)
        parts.append(Variable(name))
        cursor = end + len(CLOSE)
    return Compiled(parts=tuple(parts), variables=tuple(names))


def stringify(params: Mapping[str, object]) -> dict[str, str]:
    """Param values as text; None counts as not supplied."""
    return {key: value if isinstance(value, str) else str(value) for key, value in params.items() if value is not None}
