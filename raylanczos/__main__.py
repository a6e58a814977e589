"""``python -m raylanczos`` is the ``raylanczos`` command."""

from raylanczos.cli import command

command()
