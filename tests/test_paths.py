"""`evertrain._paths`: output paths checked before the work, one-line messages naming the fix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from evertrain._paths import (
    OutputPathError,
    check_output_dir,
    check_output_file,
    folders_to_create,
)

HAS_PROC = Path("/proc/self").exists()


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_a_writable_file_path_passes_and_creates_nothing(tmp_path):
    target = tmp_path / "new" / "deeper" / "out.json"
    assert check_output_file(target, "-o") == target
    assert check_output_file(str(tmp_path / "x.png"), "-o") == tmp_path / "x.png"
    (tmp_path / "old.json").write_text("{}")
    check_output_file(tmp_path / "old.json", "-o")  # an existing file is replaced atomically
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.json"]  # no folder, no probe left


def test_file_refuses_a_folder_a_file_as_parent_and_a_trailing_separator(tmp_path):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(OutputPathError) as error:
        check_output_file(tmp_path, "-o")
    assert _one_line(error) == (
        f"-o {tmp_path}: is a folder, but a file is written here: give a file path, "
        f"e.g. -o {tmp_path / 'NAME'}"
    )
    with pytest.raises(OutputPathError) as error:
        check_output_file(tmp_path / "a_file" / "sub" / "out.json", "--csv")
    assert _one_line(error).startswith(f"--csv {tmp_path / 'a_file' / 'sub' / 'out.json'}: ")
    assert f"{tmp_path / 'a_file'} is a file, not a folder" in str(error.value)
    with pytest.raises(OutputPathError, match="ends with a path separator"):
        check_output_file(f"{tmp_path}/not-yet/", "-o")
    assert isinstance(error.value, ValueError)  # CLIs that map ValueError to exit 2 keep working


@pytest.mark.skipif(not HAS_PROC, reason="needs Linux /proc: no one can create files there")
def test_a_folder_nobody_can_write_in_is_refused_even_for_root():
    with pytest.raises(OutputPathError) as error:
        check_output_file("/proc/evertrain/out.json", "-o")
    assert "-o /proc/evertrain/out.json: cannot write in /proc" in _one_line(error)
    with pytest.raises(OutputPathError, match="cannot write in /proc"):
        check_output_dir("/proc/evertrain-run", "--out")


def test_a_read_only_folder_is_refused(tmp_path):
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        try:
            (folder / "probe").write_text("x")
        except OSError:
            pass
        else:  # root ignores permission bits; the /proc test covers that case
            pytest.skip("this user can write in a 0555 folder (root): permission bits do not apply")
        with pytest.raises(
            OutputPathError, match="cannot write in .*read-only .*fix its permissions"
        ):
            check_output_file(folder / "out.png", "-o")
        with pytest.raises(OutputPathError, match="cannot write in"):
            check_output_dir(folder, "--out")
        with pytest.raises(OutputPathError, match="cannot write in"):
            check_output_dir(folder / "run", "--out")
    finally:
        folder.chmod(0o755)


def test_dir_accepts_existing_and_new_folders_and_refuses_files(tmp_path):
    assert check_output_dir(tmp_path, "--out") == tmp_path
    assert check_output_dir(tmp_path / "a" / "b", "--out") == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()  # checked, not created
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(OutputPathError) as error:
        check_output_dir(tmp_path / "a_file", "--out")
    assert _one_line(error) == (
        f"--out {tmp_path / 'a_file'}: is a file, but a folder is written here: give a folder "
        "path, or move that file away"
    )
    with pytest.raises(OutputPathError, match="a_file is a file, not a folder"):
        check_output_dir(tmp_path / "a_file" / "run", "--out")


def test_relative_paths_are_checked_against_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert check_output_file("fit.json", "-o") == Path("fit.json")
    os.mkdir("fit.png")
    with pytest.raises(OutputPathError, match="-o fit.png: is a folder"):
        check_output_file("fit.png", "-o")


def test_an_area_gets_its_own_error_type_with_the_same_message(tmp_path):
    class AreaError(ValueError):
        pass

    (tmp_path / "a_file").write_text("x")
    for check, path in (
        (check_output_file, tmp_path),
        (check_output_dir, tmp_path / "a_file"),
        (check_output_file, tmp_path / "a_file" / "out.json"),
        (check_output_dir, tmp_path / "a_file" / "run"),
    ):
        with pytest.raises(AreaError) as error:
            check(path, "out_dir", error=AreaError)
        assert not isinstance(error.value, OutputPathError)
        with pytest.raises(OutputPathError) as default:
            check(path, "out_dir")
        assert str(error.value) == str(default.value)


def test_folders_to_create_lists_the_missing_ones_deepest_first(tmp_path):
    assert folders_to_create(tmp_path) == []
    target = tmp_path / "a" / "b" / "c"
    assert folders_to_create(target) == [target, target.parent, tmp_path / "a"]
    assert folders_to_create(str(target)) == [target, target.parent, tmp_path / "a"]
    assert not (tmp_path / "a").exists()  # listed, not created
