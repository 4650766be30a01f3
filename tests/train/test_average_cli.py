"""`evertrain train average CKPT... -o OUT [--weights ...]`: uniform and weighted means of saved
checkpoints into a new verified checkpoint, and one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from evertrain.cli import app
from evertrain.train import history, run
from evertrain.train.averaging import average_checkpoints
from evertrain.train.checkpoint import CheckpointError, verify_checkpoint
from evertrain.train.config import ConfigError

from .conftest import make_config

runner = CliRunner()
STEPS = ["step_00000004", "step_00000008", "step_00000012"]


@pytest.fixture(scope="module")
def trained(tiny_data: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12-step run keeping its checkpoints at steps 4, 8 and 12, with an EMA."""
    out = tmp_path_factory.mktemp("average") / "run"
    config = make_config(
        out, tiny_data, keep_last=3, averaging={"kind": "ema", "half_life_tokens": 1024}
    )
    run(config, progress=False)
    return out


def _paths(run_dir: Path) -> list[str]:
    return [str(run_dir / "checkpoints" / name) for name in STEPS]


def _invoke(*args: str):
    return runner.invoke(app, ["train", "average", *args])


@pytest.mark.parametrize("weights", [None, [0.5, 0.3, 0.2]])
def test_average_equals_the_hand_computed_mean(
    weights: list[float] | None, trained: Path, tmp_path: Path
) -> None:
    out = tmp_path / "avg"
    args = [*_paths(trained), "-o", str(out)]
    if weights:
        args += ["--weights", ",".join(map(str, weights))]
    result = _invoke(*args)
    assert result.exit_code == 0, result.output
    assert f"averaged 3 checkpoint(s) into {out}" in result.output
    factors = weights or [1 / 3] * 3
    sources = [load_file(Path(p) / "model.safetensors") for p in _paths(trained)]
    averaged = load_file(out / "model.safetensors")
    assert set(averaged) == set(sources[0])
    for name, tensor in averaged.items():
        expected = sum(f * s[name].double() for f, s in zip(factors, sources, strict=True))
        torch.testing.assert_close(tensor, expected.float(), rtol=0, atol=1e-6)
    meta = verify_checkpoint(out)
    assert meta["averaged"]["weights"] == pytest.approx(factors)
    assert [s["step"] for s in meta["averaged"]["sources"]] == [4, 8, 12]
    assert (meta["step"], meta["tokens"]) == (12, 12 * 256)


def test_from_average_exports_a_runs_average(trained: Path, tmp_path: Path) -> None:
    final = trained / "checkpoints" / STEPS[-1]
    result = _invoke(str(final), "-o", str(tmp_path / "ema"), "--from-average")
    assert result.exit_code == 0, result.output
    exported = load_file(tmp_path / "ema" / "model.safetensors")
    assert exported.keys() == load_file(final / "average.safetensors").keys()
    for name, tensor in load_file(final / "average.safetensors").items():
        assert torch.equal(exported[name], tensor)


def test_an_averaged_checkpoint_forks_without_optimizer_state(
    trained: Path, tiny_data: dict[str, str], tmp_path: Path
) -> None:
    average_checkpoints(_paths(trained)[1:], tmp_path / "avg")
    child = make_config(
        tmp_path / "child", tiny_data, budget_tokens=2 * 256, init_from=str(tmp_path / "avg")
    )
    with pytest.raises(ConfigError, match="holds no optimizer state.*init_optimizer: false"):
        run(child, progress=False)
    child["out_dir"] = str(tmp_path / "child2")
    run({**child, "init_optimizer": False}, progress=False)
    assert history(tmp_path / "child2", "eval")


def _error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_bad_input_is_a_one_line_error(
    trained: Path, tiny_data: dict[str, str], tmp_path: Path
) -> None:
    paths = _paths(trained)
    out = str(tmp_path / "avg")
    assert "does not exist" in _error_line(_invoke(paths[0], str(tmp_path / "nope"), "-o", out))
    assert "2 weights for 3 checkpoints" in _error_line(
        _invoke(*paths, "-o", out, "--weights", "0.5,0.5")
    )
    assert "sum to 0.9; give weights summing to 1" in _error_line(
        _invoke(*paths, "-o", out, "--weights", "0.5,0.3,0.1")
    )
    assert "not a comma-separated list" in _error_line(
        _invoke(*paths, "-o", out, "--weights", "a,b,c")
    )
    assert ">= 0" in _error_line(_invoke(*paths, "-o", out, "--weights", "1.5,-0.5,0"))
    assert "already exists" in _error_line(_invoke(*paths, "-o", paths[0]))
    # Another architecture: a one-step run with three layers.
    other = tmp_path / "other"
    run(
        make_config(other, tiny_data, budget_tokens=256, model__n_layer=3),
        progress=False,
    )
    line = _error_line(_invoke(paths[0], str(other / "checkpoints" / "step_00000001"), "-o", out))
    assert "another architecture" in line and "n_layer: 3 vs 2" in line
    assert not Path(out).exists()  # nothing was written for bad input


def test_a_corrupted_source_is_refused(trained: Path, tmp_path: Path) -> None:
    copy = tmp_path / "broken"
    copy.mkdir()
    source = Path(_paths(trained)[0])
    for file in source.iterdir():
        (copy / file.name).write_bytes(file.read_bytes())
    meta = json.loads((copy / "meta.json").read_text())
    meta["sha256"]["model.safetensors"] = "0" * 64
    (copy / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        average_checkpoints([source, copy], tmp_path / "avg")
