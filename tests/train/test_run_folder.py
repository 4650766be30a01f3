"""One writer per run folder, and out_dir checked before any work: a second `train run` on a
busy folder, an out_dir that is a file or under one, or a read-only place are each one line,
exit 2; a lock left by a killed process is taken over."""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from evertrain._lock import LOCK_NAME
from evertrain.cli import app
from evertrain.train import history

from ..lock_holder import hold_lock_in_child
from .conftest import fork_child, make_config, rank_env

runner = CliRunner()


def write_config(tmp_path: Path, out_dir: Path, data: dict[str, str], steps: int = 2) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(make_config(out_dir, data, budget_tokens=steps * 256)))
    return path


def train_run(config: Path, *args: str):
    return runner.invoke(app, ["train", "run", str(config), "--no-progress", *args])


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_second_writer_is_refused_naming_the_holder(
    tiny_data: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    holder = hold_lock_in_child(out, "run folder")
    try:
        config = write_config(tmp_path, out, tiny_data)
        for args in ([], ["--resume"]):
            line = one_line_error(train_run(config, *args))
            assert (
                f"run folder {out} is in use by pid {holder.pid} on host {socket.gethostname()}"
                in line
            )
            assert "choose another output folder" in line
        assert not (out / "checkpoints").exists() and not (out / "log.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()


def test_lock_of_a_killed_process_is_taken_over(tiny_data: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "run"
    holder = hold_lock_in_child(out, "run folder")
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    # The dead holder's record is still in the file; the kernel dropped its flock.
    assert json.loads((out / LOCK_NAME).read_text())["pid"] == holder.pid
    result = train_run(write_config(tmp_path, out, tiny_data))
    assert result.exit_code == 0, result.output
    assert [r["step"] for r in history(out)] == [1, 2]
    assert (out / LOCK_NAME).read_text() == ""  # released at the end of the run


def test_out_dir_that_is_a_file(tiny_data: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "taken.txt"
    out.write_text("not a run")
    line = one_line_error(train_run(write_config(tmp_path, out, tiny_data)))
    assert line == (
        f"error: out_dir {out}: is a file, but a folder is written here: give a folder path, "
        "or move that file away"
    )
    assert out.read_text() == "not a run"


def test_out_dir_under_a_file(tiny_data: dict[str, str], tmp_path: Path) -> None:
    parent = tmp_path / "file"
    parent.write_text("x")
    out = parent / "deeper" / "run"
    line = one_line_error(train_run(write_config(tmp_path, out, tiny_data)))
    assert f"out_dir {out}: {parent} is a file, not a folder" in line


def _root_can_write(folder: Path) -> bool:
    try:
        (folder / "probe").write_text("x")
    except OSError:
        return False
    (folder / "probe").unlink()
    return True


@pytest.mark.parametrize("existing", [False, True])
def test_read_only_place(tiny_data: dict[str, str], tmp_path: Path, existing: bool) -> None:
    place = tmp_path / "readonly"
    place.mkdir()
    out = place / "run"
    if existing:
        out.mkdir()
    (out if existing else place).chmod(0o555)
    try:
        if _root_can_write(out if existing else place):
            pytest.skip("running as root: permission bits do not stop this process")
        line = one_line_error(train_run(write_config(tmp_path, out, tiny_data)))
        assert f"out_dir {out}" in line and "choose a folder you can write to" in line
    finally:
        (out if existing else place).chmod(0o755)


def test_bad_out_dir_is_found_before_the_data_is_opened(tmp_path: Path) -> None:
    out = tmp_path / "taken.txt"
    out.write_text("")
    # The data paths do not exist either: the out_dir error comes first (checked before any work).
    config = write_config(tmp_path, out, {"web": str(tmp_path / "no-such-data")})
    assert "error: out_dir " in one_line_error(train_run(config))


def test_unwritable_place_is_refused_even_for_root(
    tiny_data: dict[str, str], tmp_path: Path
) -> None:
    """Mode bits do not stop root; /proc refuses every new file, root included."""
    line = one_line_error(train_run(write_config(tmp_path, Path("/proc/evertrain-run"), tiny_data)))
    assert line.startswith("error: out_dir /proc/evertrain-run: cannot write in /proc")
    assert "choose a folder you can write to" in line


def test_every_ddp_rank_stops_when_the_folder_is_busy(
    tiny_data: dict[str, str], tmp_path: Path
) -> None:
    """Only rank 0 takes the lock; it tells rank 1, so a refused job ends on every rank instead of
    leaving rank 1 waiting in the first collective."""
    import time

    from evertrain._lock import FolderLockedError
    from evertrain.train import run

    from .test_distributed import free_port

    out = tmp_path / "run"
    holder = hold_lock_in_child(out, "run folder")
    cfg = make_config(out, tiny_data, budget_tokens=2 * 256)
    port = str(free_port())

    def body() -> int:
        try:
            run(cfg, progress=False)
        except FolderLockedError as error:
            return 7 if f"pid {holder.pid}" in str(error) else 8
        return 1

    children = []
    try:
        children = [fork_child(body, rank_env(rank, port)) for rank in range(2)]
        statuses = {}
        deadline = time.monotonic() + 120  # a hung rank fails the test instead of hanging it
        while len(statuses) < 2 and time.monotonic() < deadline:
            for pid in children:
                if pid not in statuses:
                    done, status = os.waitpid(pid, os.WNOHANG)
                    if done == pid:
                        statuses[pid] = os.waitstatus_to_exitcode(status)
            time.sleep(0.05)
        for pid in children:
            if pid not in statuses:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        # 7: FolderLockedError naming the holder, on both ranks.
        assert [statuses.get(pid) for pid in children] == [7, 7]
    finally:
        holder.kill()
        holder.wait()
