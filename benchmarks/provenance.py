"""Where a benchmark's figures come from: the repository's commit, recorded beside them."""

from __future__ import annotations

import subprocess
from pathlib import Path


def commit() -> str | None:
    """The repository's commit, when the benchmark runs from a git checkout (``-dirty`` with uncommitted changes)."""
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
