"""The one-line form of an error (raylanczos.errors)."""

from __future__ import annotations

from raylanczos.errors import exception_line, one_line


def test_whitespace_and_newlines_collapse_to_one_line():
    assert one_line("  shard 3:\n\tfile  a.parquet\n\n is  truncated ") == "shard 3: file a.parquet is truncated"


def test_first_line_keeps_the_first_non_blank_line():
    text = "\n\n  Incompatible shapes: [64,10] vs. [64,5]\nSee the traceback below\n"
    assert one_line(text, first_line=True) == "Incompatible shapes: [64,10] vs. [64,5]"


def test_a_long_message_is_cut_to_the_limit():
    line = one_line("x" * 500, limit=40)
    assert len(line) == 40 and line.endswith("...") and line.startswith("x" * 37)
    assert one_line("short", limit=40) == "short"


def test_exception_line_names_the_type():
    assert exception_line(ValueError("bad\n  value")) == "ValueError: bad value"
    assert exception_line(KeyError("inputs")) == "KeyError: 'inputs'"
    assert exception_line(RuntimeError()) == "RuntimeError"
    assert exception_line(ValueError("one\ntwo"), first_line=True) == "ValueError: one"
    assert exception_line(ValueError("y" * 100), limit=10) == "ValueError: yyyyyyy..."
