"""minigan.files.atomic_write: the target appears whole or not at all."""
import json
import os
import stat

import pytest

from minigan.files import atomic_write, atomic_write_json


def test_writes_the_bytes_and_creates_the_directory(tmp_path):
    target = tmp_path / "new" / "dir" / "out.bin"
    assert atomic_write(target, lambda file: file.write(b"hello")) == target
    assert target.read_bytes() == b"hello"
    assert [p.name for p in target.parent.iterdir()] == ["out.bin"]  # no temporary left


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def half_then_fail(file):
        file.write(b"half of the new")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, half_then_fail)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_json_is_written_indented_with_a_final_newline(tmp_path):
    target = tmp_path / "m.json"
    atomic_write_json(target, {"a": [1, 2.5], "b": "x"})
    text = target.read_text()
    assert text.endswith("}\n") and "\n  " in text
    assert json.loads(text) == {"a": [1, 2.5], "b": "x"}


def test_unserialisable_json_leaves_the_old_file(tmp_path):
    target = tmp_path / "m.json"
    target.write_text("old")
    with pytest.raises(TypeError):
        atomic_write_json(target, {"bad": object()})
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_written_files_get_the_usual_permissions(tmp_path):
    previous = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "f.bin", lambda file: file.write(b"x"))
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's 0600
