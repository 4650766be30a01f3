"""Data that is what it claims: shard checksums, `--overwrite` repairs, the largest token id."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from evertrain.cli import app
from evertrain.data import (
    DataError,
    PreparedDataset,
    check_vocabulary,
    max_token_id,
    prepare,
    verify_shards,
)

runner = CliRunner()
DOCS = [f"Document {i} tells of {'many ' * (i % 5 + 1)}things, {i * 7} of them." for i in range(30)]


def write_docs(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, doc in enumerate(DOCS):
        (folder / f"doc{i:03d}.txt").write_text(doc)
    return folder


def overwrite_half_with_valid_ids(shard: Path, dtype: str) -> None:
    """The second half of ``shard`` replaced by the first half: same size, every id valid."""
    tokens = np.fromfile(shard, dtype=dtype)
    half = len(tokens) // 2
    tokens[half : 2 * half] = tokens[:half][::-1]
    tokens.tofile(shard)


@pytest.fixture
def dataset(tmp_path: Path, tokenizer_path: Path) -> PreparedDataset:
    return prepare(
        [write_docs(tmp_path / "docs")],
        tmp_path / "out",
        tokenizer=tokenizer_path,
        val_fraction=0.2,
        progress=False,
    )


def test_manifest_records_each_shards_largest_token_id(dataset: PreparedDataset) -> None:
    for split, tokens in (("train", dataset.train_tokens), ("val", dataset.val_tokens)):
        assert dataset.manifest["shards"][split]["max_token_id"] == int(np.max(tokens))
    assert max_token_id(dataset) == int(max(dataset.train_tokens.max(), dataset.val_tokens.max()))


def test_verify_shards_names_dataset_shard_and_the_rebuild_command(dataset) -> None:
    verify_shards(dataset)  # intact: no error
    overwrite_half_with_valid_ids(dataset.path / "train.bin", dataset.manifest["dtype"])
    reopened = PreparedDataset(dataset.path)  # sizes match: opening it does not notice
    with pytest.raises(DataError) as error:
        verify_shards(reopened, "mine")
    message = str(error.value)
    assert "'mine'" in message and str(dataset.path / "train.bin") in message
    assert "evertrain data prepare" in message and "--overwrite" in message
    assert "overwrite=True" not in message


def test_info_verify_advice_is_a_command_that_repairs_the_shard(dataset) -> None:
    """`data info --verify` names a command; running that command rebuilds the damaged shard
    (before: `--overwrite` compared sizes only and answered "nothing to do")."""
    good = (dataset.path / "train.bin").read_bytes()
    overwrite_half_with_valid_ids(dataset.path / "train.bin", dataset.manifest["dtype"])
    result = runner.invoke(app, ["data", "info", str(dataset.path), "--verify"])
    assert result.exit_code == 2
    line = result.output.strip()
    assert len(line.splitlines()) == 1 and "train shard train.bin" in line
    command = line.split("`")[1]
    assert command.startswith("evertrain data prepare ") and command.endswith(" --overwrite")
    repaired = runner.invoke(app, shlex.split(command)[1:])
    assert repaired.exit_code == 0, repaired.output
    assert "fail their sha256 check" in repaired.output and "nothing to do" not in repaired.output
    assert (dataset.path / "train.bin").read_bytes() == good
    assert runner.invoke(app, ["data", "info", str(dataset.path), "--verify"]).exit_code == 0
    again = runner.invoke(app, shlex.split(command)[1:])  # intact now: a no-op
    assert again.exit_code == 0 and "nothing to do" in again.output


def test_overwrite_with_unchanged_inputs_rebuilds_a_damaged_shard_only_then(
    dataset, tokenizer_path, capsys
) -> None:
    folder, out = dataset.path.parent / "docs", dataset.path

    def written() -> dict[str, int]:  # the dataset's files (the lock file is touched to lock)
        return {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.suffix != ".lock"}

    files = written()
    prepare([folder], out, tokenizer=tokenizer_path, val_fraction=0.2, overwrite=True)
    assert "nothing to do" in capsys.readouterr().out  # intact: overwrite does not rewrite it
    assert written() == files
    good = (out / "val.bin").read_bytes()
    overwrite_half_with_valid_ids(out / "val.bin", dataset.manifest["dtype"])
    # Without overwrite, a finished dataset is not hashed again (a no-op stays cheap).
    prepare([folder], out, tokenizer=tokenizer_path, val_fraction=0.2)
    assert "nothing to do" in capsys.readouterr().out
    repaired = prepare([folder], out, tokenizer=tokenizer_path, val_fraction=0.2, overwrite=True)
    assert "val shard val.bin" in capsys.readouterr().out
    assert (out / "val.bin").read_bytes() == good
    repaired.verify()


def test_rebuild_command_spells_every_recorded_option(tmp_path) -> None:
    from evertrain.data.integrity import rebuild_command

    ds = prepare(
        [write_docs(tmp_path / "docs")],
        tmp_path / "out",
        vocab_size=300,
        val_fraction=0.25,
        seed=3,
        max_bytes=10_000,
        txt_separator="\n\n",
        progress=False,
    )
    words = shlex.split(rebuild_command(ds))
    assert words[:4] == ["evertrain", "data", "prepare", str((tmp_path / "docs").resolve())]
    options = dict(zip(words[4:-1:2], words[5:-1:2], strict=True))
    assert options == {
        "-o": str(ds.path.resolve()),
        "--vocab-size": "300",
        "--val-fraction": "0.25",
        "--seed": "3",
        "--max-bytes": "10000",
        "--txt-separator": "\\n\\n",
    }
    assert words[-1] == "--overwrite"
    result = runner.invoke(app, words[1:])  # the same inputs: a no-op, so the spelling is exact
    assert result.exit_code == 0 and "nothing to do" in result.output


def test_check_vocabulary_refuses_with_both_numbers_and_the_dataset(dataset) -> None:
    largest = max_token_id(dataset)
    check_vocabulary(dataset, largest + 1)  # every id fits
    with pytest.raises(DataError) as error:
        check_vocabulary(dataset, largest, "web")
    message = str(error.value)
    assert f"token id {largest}" in message and f"{largest} ids" in message
    assert "'web'" in message and "vocab_size of at least" in message


def test_max_token_id_of_an_older_manifest_is_read_from_the_shards(dataset) -> None:
    manifest = json.loads((dataset.path / "manifest.json").read_text())
    for shard in manifest["shards"].values():
        del shard["max_token_id"]
    (dataset.path / "manifest.json").write_text(json.dumps(manifest))
    old = PreparedDataset(dataset.path)
    assert max_token_id(old) == max_token_id(dataset)
    with pytest.raises(DataError, match=f"token id {max_token_id(dataset)}"):
        check_vocabulary(old, 10)
