"""Progress bars: tqdm when it is installed and the caller wants one, otherwise nothing."""
from __future__ import annotations

from typing import Any, Iterable


def progress_bar(iterable: Iterable | None = None, enabled: bool = True, **options: Any) -> Any:
    """A tqdm bar over `iterable` (or a manual one, with `total=`), with tqdm's `options`.

    Without tqdm, or when not `enabled`, returns `iterable` itself, or None for a manual
    bar, so callers loop as usual and skip `update` calls on None.
    """
    if enabled:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            pass
        else:
            return tqdm(iterable, **options)
    return iterable
