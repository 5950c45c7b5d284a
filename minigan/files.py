"""Atomic file writes: every file minigan writes (checkpoints, pictures, histories, JSON
results, sample arrays) goes
to a hidden temporary file beside its target, is flushed to disk, and is then renamed
over the target, so a reader never sees a half-written file and a crash mid-write leaves
the previous version intact.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Calls `write(file)` on a binary temporary file, then renames it to `path`.

    The parent directory is created when missing. When `write` raises, the temporary
    file is removed, `path` is left as it was, and the error propagates.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    """The process's file-creation mask (read by setting it and putting it back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_json(path: str | os.PathLike, value: Any) -> Path:
    """Writes `value` as indented JSON (with a final newline) through `atomic_write`."""
    text = json.dumps(value, indent=2) + "\n"
    return atomic_write(path, lambda file: file.write(text.encode()))
