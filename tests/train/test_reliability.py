"""Reliability without silent fallbacks (issue 17): every fallback is said in one line, a resume
with no usable checkpoint refuses, a moved run folder resumes, a full or read-only disk is one
exit-2 line that loses nothing, and only rank 0 reports ``done:``."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from evertrain.cli import app
from evertrain.train import TrainConfig, history, run
from evertrain.train import checkpoint as ckpt
from evertrain.train.logging import read_log

from .conftest import fork_child, make_config, one_thread, rank_env

runner = CliRunner()


def deterministic_config(out_dir: Path, data: dict[str, str]) -> dict:
    return make_config(out_dir, data, deterministic=True, model__dropout=0.1)


def comparable(out_dir: Path) -> list[dict]:
    return [
        {k: v for k, v in record.items() if k != "tokens_per_s"}
        for record in history(out_dir, "train") + history(out_dir, "eval")
    ]


@pytest.fixture(scope="module")
def finished(tiny_data: dict[str, str], tmp_path_factory: pytest.TempPathFactory):
    """A whole 12-step run (checkpoints at steps 8 and 12 kept) and its comparable log."""
    out = tmp_path_factory.mktemp("finished") / "run"
    with one_thread():
        run(deterministic_config(out, tiny_data), progress=False)
    return out, comparable(out)


def killed_copy(finished, tiny_data, tmp_path: Path, kill_at: str = "step:10") -> Path:
    """A run SIGKILLed at ``kill_at`` (checkpoints 4 and 8 on disk); returns its config path."""
    out = tmp_path / "run"
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(deterministic_config(out, tiny_data), sort_keys=False))
    pid = fork_child(
        lambda: run(TrainConfig.from_yaml(config_path), progress=False) and 0,
        env={"EVERTRAIN_TEST_KILL_AT": kill_at},
    )
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    return config_path


def cli_resume(config_path: Path, *extra: str):
    return runner.invoke(
        app, ["train", "run", str(config_path), "--resume", "--no-progress", *extra]
    )


def error_lines(output: str) -> list[str]:
    return [
        line for line in output.splitlines() if line.startswith(("error:", "evertrain: warning:"))
    ]


# ---------------------------------------------------------------- every checkpoint corrupt


def test_resume_refuses_when_every_checkpoint_is_corrupt(finished, tmp_path: Path) -> None:
    """It used to restart from step 0 and exit 0 with warnings: the user thought it resumed."""
    out = tmp_path / "run"
    shutil.copytree(finished[0], out)
    config_path = tmp_path / "config.yaml"
    config = yaml.safe_load((out / "config.yaml").read_text()) | {"out_dir": str(out)}
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    (out / "checkpoints" / "step_00000008" / "state.pt").write_bytes(b"torn")
    (out / "checkpoints" / "step_00000012" / "meta.json").write_bytes(b'{"step": 12, "sha')
    log_before = (out / "log.jsonl").read_bytes()

    refused = cli_resume(config_path)
    assert refused.exit_code == 2, refused.output
    (line,) = error_lines(refused.output)
    assert "every checkpoint" in line and "--start-over-if-corrupt" in line
    assert "step_00000008: state.pt is corrupted or truncated" in line
    assert "step_00000012/meta.json: unreadable, not valid JSON" in line
    # Refused before touching anything: both folders and the log are as they were.
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "step_00000008",
        "step_00000012",
    ]
    assert (out / "log.jsonl").read_bytes() == log_before

    started_over = cli_resume(config_path, "--start-over-if-corrupt")
    assert started_over.exit_code == 0, started_over.output
    assert any("starting over from step 0" in line for line in error_lines(started_over.output))
    assert comparable(out) == finished[1]  # trained again from scratch, identically
    assert {".corrupt-step_00000008", ".corrupt-step_00000012"} <= {
        p.name for p in (out / "checkpoints").iterdir()
    }


def test_start_over_flag_needs_resume(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["train", "run", str(tmp_path / "c.yaml"), "--start-over-if-corrupt"]
    )
    assert result.exit_code == 2 and "only applies with --resume" in result.output


# ---------------------------------------------------------------- unreadable meta.json

DAMAGES = {
    "deleted": None,
    "truncated": b'{"format": 1, "step": 12, "sha2',
    "non_utf8": b'{"format": 1, "step": 12, "name": "\xff\xfe"}',
    "garbage": b"[1, 2, 3]",
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_unreadable_meta_falls_back_with_one_line(
    damage: str, finished, tiny_data, tmp_path: Path
) -> None:
    """A deleted/truncated meta.json used to fall back without a word; a non-UTF-8 byte crashed
    resume with 'utf-8 codec can't decode' naming no file."""
    config_path = killed_copy(finished, tiny_data, tmp_path)  # checkpoints 4 and 8 on disk
    meta = tmp_path / "run" / "checkpoints" / "step_00000008" / "meta.json"
    if DAMAGES[damage] is None:
        meta.unlink()
    else:
        meta.write_bytes(DAMAGES[damage])
    with one_thread(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run(TrainConfig.from_yaml(config_path), resume=True, progress=False)
    fallbacks = [str(w.message) for w in caught if "skipped" in str(w.message)]
    assert len(fallbacks) == 1, fallbacks
    assert str(meta) in fallbacks[0] and "using step_00000004 (step 4) instead" in fallbacks[0]
    assert result.steps == 12
    assert comparable(tmp_path / "run") == finished[1]  # steps 5..12 re-trained identically


def test_non_utf8_meta_is_a_named_fork_error_and_verify_reports_it(finished, tmp_path) -> None:
    out = tmp_path / "run"
    shutil.copytree(finished[0], out)
    meta = out / "checkpoints" / "step_00000012" / "meta.json"
    meta.write_bytes(meta.read_bytes().replace(b'"name"', b'"n\xffme"'))
    listing = runner.invoke(app, ["train", "checkpoints", str(out), "--verify"])
    assert listing.exit_code == 2, listing.output  # was a UnicodeDecodeError traceback
    assert not isinstance(listing.exception, UnicodeDecodeError)
    bad = [line for line in listing.output.splitlines() if "BAD:" in line]
    assert len(bad) == 1 and f"{meta}: unreadable, not UTF-8" in bad[0]
    with pytest.raises(ckpt.CheckpointError, match="not UTF-8"):
        ckpt.verify_checkpoint(meta.parent)
    # init_from of the run directory falls back to step 8, saying so once.
    with pytest.warns(UserWarning, match="using step_00000008"):
        assert ckpt.resolve_checkpoint(out).name == "step_00000008"


def test_garbage_manifest_lists_checkpoints_from_disk(finished, tmp_path: Path) -> None:
    out = tmp_path / "run"
    shutil.copytree(finished[0], out)
    (out / "manifest.json").write_bytes(b"\x00\x01garbage")
    listing = runner.invoke(app, ["train", "checkpoints", str(out), "--verify"])
    assert listing.exit_code == 0, listing.output  # was a JSONDecodeError traceback
    (warning,) = error_lines(listing.output)
    assert f"{out / 'manifest.json'}: not valid JSON" in warning and "found in" in warning
    rows = [line for line in listing.output.splitlines() if line.startswith("step_")]
    assert [row.split()[0] for row in rows] == ["step_00000008", "step_00000012"]
    assert all(row.endswith("[ok]") for row in rows)


# ---------------------------------------------------------------- log.jsonl


def test_unreadable_log_lines_are_named_once(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_bytes(b'{"step": 1}\nnot json\n{"step": 2}\n\xff\xfe\n{"step": 3}\n{"step": 4, "lo')
    with pytest.warns(UserWarning) as caught:
        records = read_log(path)
    assert [r["step"] for r in records] == [1, 2, 3]
    (message,) = [str(w.message) for w in caught]
    assert str(path) in message and "3 unreadable line(s) 2, 4, 6" in message
    assert "torn by a crash" in message


# ---------------------------------------------------------------- a moved run folder


def test_manifest_paths_are_relative_and_a_moved_run_resumes(
    finished, tiny_data, tmp_path: Path
) -> None:
    config_path = killed_copy(finished, tiny_data, tmp_path)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert [e["path"] for e in manifest["checkpoints"]] == [
        "checkpoints/step_00000004",
        "checkpoints/step_00000008",
    ]
    moved = tmp_path / "elsewhere" / "run"
    shutil.copytree(tmp_path / "run", moved)
    shutil.rmtree(tmp_path / "run")  # the original is gone (another disk, another cluster)
    listing = runner.invoke(app, ["train", "checkpoints", str(moved), "--verify"])
    assert listing.exit_code == 0 and listing.output.count("[ok]") == 2, listing.output
    with one_thread():
        result = run(
            TrainConfig.from_yaml(config_path, [f"out_dir={moved}"]), resume=True, progress=False
        )
    assert result.steps == 12 and result.last_checkpoint == moved / "checkpoints/step_00000012"
    assert comparable(moved) == finished[1]


def test_old_absolute_manifest_reads_this_folders_checkpoints(finished, tmp_path: Path) -> None:
    """A manifest written before relative paths names the original folder's checkpoints; a copy
    must verify its own (here the original's are fine and the copy's step 8 is damaged)."""
    copy = tmp_path / "copy"
    shutil.copytree(finished[0], copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    for entry in manifest["checkpoints"]:
        entry["path"] = str(finished[0] / "checkpoints" / entry["name"])
    (copy / "manifest.json").write_text(json.dumps(manifest))
    (copy / "checkpoints" / "step_00000008" / "model.safetensors").write_bytes(b"x")
    listing = runner.invoke(app, ["train", "checkpoints", str(copy), "--verify"])
    assert listing.exit_code == 2, listing.output
    assert f"BAD: {copy / 'checkpoints' / 'step_00000008'}: model.safetensors" in listing.output


# ---------------------------------------------------------------- full disk, read-only


@pytest.mark.parametrize(("code", "words"), [(errno.ENOSPC, "disk full"), (errno.EROFS, "make")])
def test_failed_checkpoint_write_is_one_line_and_loses_nothing(
    code: int, words: str, finished, tiny_data, tmp_path: Path, monkeypatch
) -> None:
    out = tmp_path / "run"
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(deterministic_config(out, tiny_data), sort_keys=False))
    real_write = ckpt._write_synced

    def write(path: Path, data: bytes) -> str:
        if path.name == "state.pt" and "step_00000008" in path.parent.name:
            real_write(path, data[: len(data) // 2])  # the disk filled half-way through
            raise OSError(code, os.strerror(code))
        return real_write(path, data)

    monkeypatch.setattr(ckpt, "_write_synced", write)
    with one_thread():
        failed = runner.invoke(app, ["train", "run", str(config_path), "--no-progress"])
    assert failed.exit_code == 2, failed.output  # was a traceback, exit 1
    (line,) = error_lines(failed.output)
    assert words in line and str(out / "checkpoints" / "step_00000008") in line
    assert "needs about 1.4 MB" in line and "--resume continues from step_00000004" in line
    assert len(failed.output.splitlines()) == 1
    # Nothing lost, nothing left: step 4 verifies, the log holds steps 1..8, no temp folder.
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step_00000004"]
    ckpt.verify_checkpoint(out / "checkpoints" / "step_00000004")
    assert [r["step"] for r in history(out, "train")] == list(range(1, 9))
    monkeypatch.undo()
    with one_thread():
        assert cli_resume(config_path).exit_code == 0
    assert comparable(out) == finished[1]


def test_full_log_disk_is_one_line(tiny_data, tmp_path: Path, monkeypatch) -> None:
    from evertrain.train import logging as run_logging

    def full(self, record) -> None:  # noqa: ANN001
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(self.path))

    monkeypatch.setattr(run_logging.RunLogger, "log", full)
    config_path = tmp_path / "config.yaml"
    config_path.write_text(
        yaml.safe_dump(make_config(tmp_path / "run", tiny_data), sort_keys=False)
    )
    failed = runner.invoke(app, ["train", "run", str(config_path), "--no-progress"])
    assert failed.exit_code == 2, failed.output
    (line,) = error_lines(failed.output)
    assert line.startswith("error: disk full: cannot write") and "log.jsonl" in line


def test_partial_checkpoint_is_removed_before_any_write_on_resume(
    finished, tiny_data, tmp_path: Path, monkeypatch
) -> None:
    """While the disk stays full, the partial folder is the only free space: resume used to fail
    (writing the log/manifest) before the prune that would have removed it."""
    import evertrain._atomic as atomic

    config_path = killed_copy(finished, tiny_data, tmp_path)
    partial = tmp_path / "run" / "checkpoints" / ".tmp-step_00000012-999999"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"\0" * 1000)
    real_create = atomic._create_temp

    def create(directory: Path, name: str):  # noqa: ANN202
        if partial.exists():  # the disk is full as long as the partial folder takes the space
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(directory / name))
        return real_create(directory, name)

    monkeypatch.setattr(atomic, "_create_temp", create)
    with one_thread():
        resumed = cli_resume(config_path)
    assert resumed.exit_code == 0, resumed.output
    assert not partial.exists()
    assert comparable(tmp_path / "run") == finished[1]


@contextlib.contextmanager
def small_tmpfs(folder: Path, size: str) -> Iterator[Path]:
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="mounting a tmpfs needs root"
)
def test_full_tmpfs_then_resume(finished, tiny_data, tmp_path: Path) -> None:
    """The real thing: a 2 MB tmpfs holds one checkpoint (1.4 MB) but not a second."""
    with small_tmpfs(tmp_path / "disk", "2m") as disk:
        out = disk / "run"
        config_path = tmp_path / "config.yaml"
        config_path.write_text(
            yaml.safe_dump(deterministic_config(out, tiny_data), sort_keys=False)
        )
        with one_thread():
            failed = runner.invoke(app, ["train", "run", str(config_path), "--no-progress"])
        assert failed.exit_code == 2, failed.output
        (line,) = error_lines(failed.output)
        assert line.startswith(f"error: disk full: cannot write {out / 'checkpoints'}")
        assert "is free there" in line
        assert [p.name for p in (out / "checkpoints").iterdir()] == ["step_00000004"]
        ckpt.verify_checkpoint(out / "checkpoints" / "step_00000004")
        # Still full: a resume fails the same way, in one line, and still loses nothing.
        with one_thread():
            again = cli_resume(config_path)
        assert again.exit_code == 2 and len(error_lines(again.output)) == 1, again.output
        ckpt.verify_checkpoint(out / "checkpoints" / "step_00000004")
        subprocess.run(["mount", "-o", "remount,size=8m", str(disk)], check=True)
        with one_thread():
            resumed = cli_resume(config_path)
        assert resumed.exit_code == 0, resumed.output
        assert comparable(out) == finished[1]
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        with one_thread():
            read_only = cli_resume(config_path)
        assert read_only.exit_code == 2 and len(error_lines(read_only.output)) == 1
        assert "Read-only file system" in read_only.output


# ---------------------------------------------------------------- torchrun: one done line


def test_only_rank_0_prints_done(tiny_data, tmp_path: Path) -> None:
    """Both ranks used to print `done:`, rank 1 with a wrong last checkpoint."""
    from .test_distributed import OVERRIDES, free_port

    config_path = tmp_path / "config.yaml"
    config_path.write_text(
        yaml.safe_dump(make_config(tmp_path / "ddp", tiny_data, **OVERRIDES), sort_keys=False)
    )
    port = str(free_port())

    def body(rank: int):  # noqa: ANN202
        def main() -> int:
            import evertrain.train.loop as loop
            from evertrain.train.cli import app as train_app

            real_run = loop.run

            def recording_run(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
                result = real_run(*args, **kwargs)
                (tmp_path / f"rank{rank}.last").write_text(str(result.last_checkpoint))
                return result

            loop.run = recording_run  # the CLI imports run from the module when it runs
            with open(tmp_path / f"rank{rank}.out", "w") as out:
                sys.stdout = out  # (pytest's capture holds the inherited one)
                try:
                    train_app(["run", str(config_path), "--no-progress"])
                finally:
                    out.flush()  # the child leaves by os._exit
            return 0

        return main

    children = [fork_child(body(rank), rank_env(rank, port)) for rank in range(2)]
    assert [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children] == [0, 0]
    rank0 = (tmp_path / "rank0.out").read_text()
    assert "done: 6 steps" in rank0 and "last checkpoint" in rank0 and "step_00000006" in rank0
    assert "done:" not in (tmp_path / "rank1.out").read_text()
    # Every rank's result names the last checkpoint, though only rank 0 saved it.
    expected = str(tmp_path / "ddp" / "checkpoints" / "step_00000006")
    assert [(tmp_path / f"rank{r}.last").read_text() for r in range(2)] == [expected] * 2
