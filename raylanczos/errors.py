"""How an error reads in the one line a user sees.

Every layer that reports an exception to a person (a backend's refusal of a loss, a
worker's answer, the command line) writes it with these helpers, so that a message is
always one line: whitespace collapsed, optionally only the exception's first line, cut to
a length. Pure Python: no numpy, no framework, so every layer may import it.
"""

from __future__ import annotations

#: What a message cut to its limit ends with.
ELLIPSIS = "..."


def one_line(text: str, *, first_line: bool = False, limit: int | None = None) -> str:
    """``text`` on one line: its whitespace (newlines included) collapsed to single spaces.

    ``first_line`` keeps only the first non-blank line (a framework's message often goes on
    with hints and traces); ``limit`` cuts the result to that many characters, the last
    three being ``...``.
    """
    if first_line:
        text = next((line for line in text.splitlines() if line.strip()), "")
    line = " ".join(text.split())
    if limit is not None and len(line) > limit:
        return line[: max(limit - len(ELLIPSIS), 0)] + ELLIPSIS
    return line


def exception_line(err: BaseException, *, first_line: bool = False, limit: int | None = None) -> str:
    """``Type: message`` on one line (see :func:`one_line` for ``first_line`` and ``limit``,
    which apply to the message); ``Type`` alone when the message is empty. A ``KeyError``'s
    message is its key, quoted."""
    message = one_line(str(err), first_line=first_line, limit=limit)
    return f"{type(err).__name__}: {message}" if message else type(err).__name__
