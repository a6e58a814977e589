"""Where raylanczos keeps what it can reuse between runs on a machine: the examples' trained
weights and JAX's compiled programs. Pure Python.

The directory is ``$RAYLANCZOS_CACHE``, else ``$XDG_CACHE_HOME/raylanczos`` (default
``~/.cache/raylanczos``). ``RAYLANCZOS_COMPILATION_CACHE=off`` turns the compilation cache
off; a ``JAX_COMPILATION_CACHE_DIR`` of the user's own is left as it is.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The environment variable that turns JAX's persistent compilation cache off (``off``, ``0``, ``false``).
COMPILATION_CACHE_SWITCH = "RAYLANCZOS_COMPILATION_CACHE"


def cache_dir() -> Path:
    """The cache directory (not created here)."""
    if os.environ.get("RAYLANCZOS_CACHE"):
        return Path(os.environ["RAYLANCZOS_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "raylanczos"


def compilation_cache_dir() -> Path | None:
    """Where JAX should keep compiled programs, or None when the user chose otherwise: the
    cache is switched off, or JAX's own ``JAX_COMPILATION_CACHE_DIR`` is set."""
    if os.environ.get(COMPILATION_CACHE_SWITCH, "").lower() in ("off", "0", "false", "no"):
        return None
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return None
    return cache_dir() / "jax-compilation"
