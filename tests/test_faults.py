"""Faults and damaged inputs: each is one WeightlabError naming the file and the fix, and no partial output is left."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest

from weightlab.errors import InputError, OutputError
from weightlab.io import atomic_path, mount_point, read_json, read_npz, write_error, write_folder_atomically, write_json, write_npz


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- disk full and permissions: the atomic writers -------------------------------------------------------------------

def failing_write(code: int):
    def write_text(self, *args, **kwargs):
        self.open("w").write("partial")  # something reached the disk before the failure
        raise OSError(code, os.strerror(code))
    return write_text


def test_a_full_disk_names_the_device_and_the_file_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(Path, "write_text", failing_write(errno.ENOSPC))
    target = tmp_path / "results" / "summary.json"
    with pytest.raises(OutputError) as info:
        write_json(target, {"a": 1})
    assert str(info.value).startswith(f"no space left on {mount_point(tmp_path)} writing {target};")
    assert leftovers(target.parent) == []


def test_an_old_result_survives_a_failed_rewrite(tmp_path, monkeypatch):
    target = tmp_path / "summary.json"
    write_json(target, {"old": True})
    monkeypatch.setattr(Path, "write_text", failing_write(errno.ENOSPC))
    with pytest.raises(OutputError):
        write_json(target, {"new": True})
    monkeypatch.undo()
    assert read_json(target) == {"old": True} and leftovers(tmp_path) == ["summary.json"]


def test_a_writer_without_an_errno_on_a_full_disk_is_a_full_disk(tmp_path, monkeypatch):
    """torch.save reports ENOSPC as RuntimeError('unexpected pos ...'), without an errno."""
    import weightlab.io as io

    monkeypatch.setattr(io, "_disk_full", lambda folder: True)
    target = tmp_path / "model.pt"
    with pytest.raises(OutputError, match=f"no space left on .* writing {target}"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"PK\x03\x04")
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    assert leftovers(tmp_path) == []
    monkeypatch.setattr(io, "_disk_full", lambda folder: False)  # with space left it is not a disk problem
    with pytest.raises(RuntimeError, match="unexpected pos"):
        with atomic_path(target):
            raise RuntimeError("unexpected pos 576 vs 534")


@pytest.mark.parametrize("code, expected", [
    (errno.EACCES, "permission denied on"), (errno.EPERM, "permission denied on"), (errno.EROFS, "is a read-only file system"),
])
def test_permission_and_read_only_failures_are_one_line(tmp_path, monkeypatch, code, expected):
    monkeypatch.setattr(Path, "mkdir", lambda self, **kwargs: (_ for _ in ()).throw(OSError(code, os.strerror(code), str(self))))
    target = tmp_path / "results" / "x.npz"
    with pytest.raises(OutputError) as info:
        write_npz(target, a=np.zeros(3))
    message = str(info.value)
    assert message.startswith(f"cannot write {target}:") and expected in message and "\n" not in message


def test_a_folder_written_atomically_reports_a_full_disk_and_leaves_nothing(tmp_path):
    def fill(tmp: Path) -> None:
        (tmp / "weights.safetensors").write_bytes(b"0" * 10)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OutputError, match=f"no space left on .* writing {tmp_path / 'model'};"):
        write_folder_atomically(tmp_path / "model", fill)
    assert leftovers(tmp_path) == []


def test_other_failures_and_our_own_errors_pass_through_unchanged(tmp_path):
    assert write_error(ValueError("bad"), tmp_path / "x") is None
    assert write_error(InputError("x is damaged"), tmp_path / "x") is None
    with pytest.raises(InputError, match="x is damaged"):
        with atomic_path(tmp_path / "x"):
            raise InputError("x is damaged")
    assert leftovers(tmp_path) == []


def test_mount_point_of_a_path_not_yet_made_is_its_file_systems():
    assert mount_point("/proc/self/not/yet/there") == Path("/proc")
    assert mount_point("/") == Path("/")


# --- damaged derived files: the shared readers ------------------------------------------------------------------------

def test_a_truncated_or_foreign_npz_is_an_input_error_with_the_fix(tmp_path):
    path = tmp_path / "images.npz"
    write_npz(path, train_images=np.arange(1000, dtype=np.uint8))
    whole = path.read_bytes()
    for damaged in (whole[: len(whole) // 2], b"not a zip", whole[:100] + b"\0" * 400 + whole[500:]):
        path.write_bytes(damaged)
        with pytest.raises(InputError, match=f"{path} is damaged or truncated .*; delete it and re-run"):
            read_npz(path)
    write_npz(path, train_images=np.zeros(2))
    with pytest.raises(InputError, match=r"lacks the arrays \['test_images'\]; .* delete it and re-run"):
        read_npz(path, keys=("train_images", "test_images"))


def test_a_damaged_json_is_an_input_error_with_the_fix(tmp_path):
    path = tmp_path / "x.json"
    for damaged in (b'{"a": [1, 2', b"\xff\xfe\x00binary"):
        path.write_bytes(damaged)
        with pytest.raises(InputError, match=f"{path} is not valid JSON .*; delete it and re-run its rule"):
            read_json(path)
