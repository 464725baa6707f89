"""Atomic writes and the refusal to overwrite (chiral_tasks.common.files)."""

import os

import pytest
from _files import modes, snapshot, umask

from chiral_tasks.common.files import atomic_path, refuse_existing


def test_atomic_path_renames_into_place_with_mode_0644(tmp_path):
    target = tmp_path / "new" / "folder" / "data.json"
    with umask(0o022), atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".data.json.")
        assert tmp.suffix == ".tmp" and not target.exists()
        tmp.write_text("{}")
    assert target.read_text() == "{}"
    assert modes([target]) == {0o644}
    assert os.listdir(target.parent) == ["data.json"]


def test_atomic_path_honours_the_umask(tmp_path):
    with umask(0o027), atomic_path(tmp_path / "x") as tmp:
        tmp.write_bytes(b"x")
    assert modes([tmp_path / "x"]) == {0o640}


def test_atomic_path_failure_leaves_the_old_file_and_no_temporary(tmp_path):
    (tmp_path / "keep.npy").write_bytes(b"precious")
    (tmp_path / "other").write_text("unrelated")
    before = snapshot(tmp_path)
    for name in ("keep.npy", "fresh.npy"):
        with pytest.raises(RuntimeError, match="interrupted"):
            with atomic_path(tmp_path / name) as tmp:
                tmp.write_bytes(b"half a fi")
                raise RuntimeError("interrupted")
    assert snapshot(tmp_path) == before


def test_atomic_path_keeps_a_suffix_for_writers_that_need_one(tmp_path):
    with atomic_path(tmp_path / "a.gif", suffix=".tmp.gif") as tmp:
        assert tmp.name.endswith(".tmp.gif")
        tmp.write_bytes(b"GIF89a")
    assert os.listdir(tmp_path) == ["a.gif"]


def test_refuse_existing_names_the_folder_the_file_and_the_count(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("b", "sub/c", "unrelated"):
        (tmp_path / name).write_text(name)
    refuse_existing(tmp_path, [tmp_path / "a", tmp_path / "d"])  # none exists: fine
    wanted = [tmp_path / n for n in ("a", "sub/c", "b")]
    with pytest.raises(FileExistsError) as err:
        refuse_existing(tmp_path, wanted)
    message = str(err.value)
    assert message.startswith(f"{tmp_path}: already holds sub/c (and 1 more file ")
    assert "--overwrite" in message and "\n" not in message
    with pytest.raises(FileExistsError, match=r"holds b; pass --overwrite"):
        refuse_existing(tmp_path, [tmp_path / "b"])


def test_refuse_existing_counts_a_dangling_symlink(tmp_path):
    (tmp_path / "link").symlink_to(tmp_path / "missing")
    with pytest.raises(FileExistsError, match="link"):
        refuse_existing(tmp_path, [tmp_path / "link"])
