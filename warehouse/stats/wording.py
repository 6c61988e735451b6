"""Plain-English lists and counts for the sentences the build writes (its notes, the reasons a
mart is empty), kept in one place so every sentence names things the same way."""

from __future__ import annotations

from collections.abc import Sequence


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def join(names: Sequence[str], limit: int = 8) -> str:
    """'a', 'a and b', 'a, b and c'; long lists end in '... and N more'."""
    names = list(names)
    if len(names) > limit:
        return f"{', '.join(names[:limit])} and {len(names) - limit} more"
    if len(names) <= 1:
        return "".join(names)
    return f"{', '.join(names[:-1])} and {names[-1]}"
