"""Files written whole or not at all: a unique temporary name, renamed on success, removed on failure."""

from __future__ import annotations

import pytest

from bench import paths, results


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "cell.json"
    target.write_text("old")
    with pytest.raises(OSError), paths.atomic_file(target) as tmp:
        tmp.write_text("half")
        raise OSError("No space left on device")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["cell.json"]


def test_concurrent_writers_get_their_own_temporaries_and_the_last_whole_file_wins(tmp_path):
    target = tmp_path / "sub" / "features.pt"
    with paths.atomic_file(target) as first, paths.atomic_file(target) as second:
        assert first != second and first.parent == target.parent
        first.write_text("first")
        second.write_text("second")
    assert target.read_text() == "first"  # the outer block finished last
    assert sorted(p.name for p in target.parent.iterdir()) == ["features.pt"]


def test_results_records_are_written_through_it(tmp_path, monkeypatch):
    def full_disk(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    path = tmp_path / "cells" / "abc.json"
    monkeypatch.setattr(type(path), "write_text", full_disk)
    with pytest.raises(OSError, match="No space"):
        results._write(path, {"seeds": []})
    assert not list((tmp_path / "cells").iterdir())
