"""minigan.run.progress.progress_bar: tqdm when wanted and installed, the plain iterable otherwise."""
import sys

from minigan.run.progress import progress_bar


def test_disabled_gives_back_the_iterable_or_none():
    items = range(3)
    assert progress_bar(items, enabled=False) is items
    assert progress_bar(enabled=False, total=10) is None


def test_enabled_wraps_in_tqdm(capsys):
    from tqdm.auto import tqdm
    bar = progress_bar(range(3), desc="work", leave=False)
    assert isinstance(bar, tqdm) and list(bar) == [0, 1, 2]
    manual = progress_bar(total=5, leave=False)
    manual.update(2)
    assert manual.n == 2
    manual.close()


def test_without_tqdm_gives_back_the_iterable(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # import now raises ImportError
    items = [1, 2]
    assert progress_bar(items) is items
    assert progress_bar(total=3) is None
