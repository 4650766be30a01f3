"""The `refine` (Defazio et al. 2023) and `uba` (Tang et al. 2025) families and
`evertrain schedule refine LOG -o spec.yaml`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from evertrain.cli import app
from evertrain.schedules import ScheduleError, from_spec, get
from evertrain.schedules.refine import median_filter, refine_from_norms, refined_multipliers
from evertrain.schedules.refine_input import read_grad_norms
from evertrain.train.logging import RunLogger


@pytest.fixture
def runner() -> CliRunner:
    try:
        return CliRunner(mix_stderr=False)
    except TypeError:  # click >= 8.2 always separates stderr
        return CliRunner()


def write_log(folder: Path, grad_norms: list[float | None], *, tokens_per_step: int = 256) -> Path:
    """A log.jsonl written by the trainer's own logger: train records after steps 1..N (a NaN
    norm is written as null, as the trainer does), with eval records in between."""
    logger = RunLogger(folder)
    for step, norm in enumerate(grad_norms, start=1):
        logger.log({"kind": "train", "step": step, "tokens": step * tokens_per_step, "lr": 1e-3,
                    "loss": 3.0, "grad_norm": math.nan if norm is None else norm,
                    "tokens_per_s": 1.0, "tokens_per_source": {"prose": step}, "skipped": 0})  # fmt: skip
        if step % 5 == 0:
            logger.log({"kind": "eval", "step": step, "tokens": step * tokens_per_step,
                        "eval": {"prose": 3.0}})  # fmt: skip
    logger.close()
    return folder / "log.jsonl"


# ---------------------------------------------------------------------------------------- uba


@pytest.mark.parametrize(
    "fields",
    [
        dict(peak=1e-3, total=1000),
        dict(peak=3e-4, total=24000, warmup=2160, floor=3e-5, unit="tokens"),
        dict(peak=1.0, total=37, warmup=5, warmup_shape="cosine", warmup_start=0.1, floor=0.01),
    ],
)
def test_uba_with_phi_2_is_cosine_to_1e_12(fields):
    uba, cosine = get("uba", phi=2, **fields), get("cosine", **fields)
    total = fields["total"]
    grid = np.concatenate([np.linspace(-10, 1.2 * total, 20_001), np.arange(total + 2.0)])
    np.testing.assert_allclose(uba(grid), cosine(grid), rtol=1e-12, atol=1e-300)
    scalars = [uba(float(t)) for t in grid[::97]]
    np.testing.assert_allclose(scalars, cosine(grid[::97]), rtol=1e-12, atol=1e-300)


def test_uba_formula_end_points_and_what_phi_does():
    peak, floor, total, warmup = 1.0, 0.1, 1000, 100
    mid = warmup + (total - warmup) / 2  # x = 1/2: c = 1 + cos(pi/2) = 1
    for phi in (1e-6, 0.5, 1.0, 2.0, 3.0, 100.0):
        s = get("uba", peak=peak, total=total, phi=phi, warmup=warmup, floor=floor)
        assert s(warmup) == peak and s(total) == floor and s(10 * total) == floor
        assert s(mid) == pytest.approx(floor + (peak - floor) * 2 / (2 * phi + 2 - phi), rel=1e-14)
        decay = s(np.arange(warmup, total + 1.0))
        assert np.all(np.diff(decay) <= 0) and np.all(decay >= floor)
    at_mid = [get("uba", peak=1.0, total=100, phi=phi)(50.0) for phi in (0.1, 1, 2, 4, 40)]
    assert at_mid == sorted(at_mid, reverse=True)  # smaller phi holds the LR up longer
    assert get("uba", peak=1.0, total=100, phi=1e-9)(99.0) > 0.99  # phi -> 0: constant, then drop
    assert get("uba", peak=1.0, total=100, phi=1e3)(30.0) < 0.01  # large phi: early, fast decay


@pytest.mark.parametrize(
    "params, needle",
    [
        (dict(peak=1.0, total=100, phi=0), "phi=0 must be > 0"),
        (dict(peak=1.0, total=100, phi=-1), "phi=-1 must be > 0"),
        (dict(peak=1.0, total=100), "missing required parameter 'phi'"),
        (dict(peak=1.0, total=100, phi=2, warmup=200), "warmup"),
        (dict(peak=1.0, total=100, phi=2, floor=2.0), "floor"),
    ],
)
def test_uba_validation_names_the_field(params, needle):
    with pytest.raises(ScheduleError, match=re_escape(needle)):
        get("uba", **params)


def re_escape(text: str) -> str:
    import re

    return re.escape(text)


def test_uba_spec_round_trips_and_takes_a_new_horizon():
    s = from_spec("uba:peak=1e-3,total=1000,phi=1.5,warmup=100,floor=1e-5")
    rebuilt = from_spec(json.loads(json.dumps(s.to_spec())))
    grid = np.linspace(-5, 1200, 3001)
    np.testing.assert_array_equal(rebuilt(grid), s(grid))
    longer = s.with_total(2000)
    assert longer.total == 2000 and longer(100) == 1e-3 and longer(2000) == 1e-5
    assert longer.to_spec()["phi"] == 1.5


# ------------------------------------------------------------------------------------- refine


def test_median_filter_removes_spikes_and_cuts_the_window_at_the_ends():
    values = np.array([1.0, 1.0, 9.0, 1.0, 1.0, 5.0, 6.0, 7.0])
    np.testing.assert_array_equal(median_filter(values, 1), values)
    np.testing.assert_array_equal(median_filter(values, 3), [1, 1, 1, 1, 1, 5, 6, 6.5])
    # Width 5: the first value's window is values[0:3] (cut short, never zero-padded).
    filtered = median_filter(values, 5)
    assert filtered[0] == 1.0 and filtered[2] == 1.0 and filtered[-1] == np.median(values[-3:])
    assert median_filter(values, 4)[3] == np.median(values[2:6])  # even: one more after
    assert median_filter(values, 100).tolist() == [np.median(values[: 50 + i]) for i in range(8)]


def test_refined_multipliers_by_hand():
    # w = [1, 1/4, 1]; sum of later weights = [5/4, 1, 0]; eta = [5/4, 1/4, 0] / (5/4).
    np.testing.assert_allclose(refined_multipliers(np.array([1.0, 2.0, 1.0])), [1, 0.2, 0])
    np.testing.assert_allclose(
        refined_multipliers(np.array([1.0, 2.0, 1.0]), power=1), [1, 1 / 3, 0]
    )
    # Large early norms -> a warmup; norms that grow at the end -> a faster final anneal; a
    # drop in the norm raises the LR before it (the weights after the drop are larger).
    rising = refined_multipliers(np.array([8.0, 4.0, 2.0] + [1.0] * 20))
    assert rising[0] < rising[1] < rising[2] < rising[3] and rising.max() == 1.0
    linear = refined_multipliers(np.ones(25))
    growing = refined_multipliers(np.array([1.0] * 20 + [2.0] * 5))
    assert np.all(growing[20:24] < 0.5 * linear[20:24]) and growing[0] == 1.0
    shrinking = refined_multipliers(np.array([1.0] * 20 + [0.5] * 5))
    assert shrinking[10] < linear[10] and shrinking[21] > linear[21]


def test_refine_on_constant_norms_is_linear_decay():
    steps = 200
    s = refine_from_norms(np.arange(steps), np.full(steps, 0.7), peak=3e-4)
    linear = get("linear", peak=3e-4, total=steps - 1)
    grid = np.arange(-3.0, steps + 5)
    np.testing.assert_allclose(s(grid), linear(grid), rtol=1e-12, atol=1e-18)
    assert s(0) == 3e-4 and s(steps - 1) == 0.0
    # A few knots are enough for a straight line: the same values between them.
    few = refine_from_norms(np.arange(steps), np.full(steps, 0.7), peak=3e-4, knots=3)
    assert len(few.to_spec()["knots"]) == 3
    np.testing.assert_allclose(few(grid), linear(grid), rtol=1e-12, atol=1e-18)


def test_refine_warmup_reaches_peak_after_it():
    steps = 100
    s = refine_from_norms(np.arange(steps), np.ones(steps), peak=1e-3, warmup=10)
    assert s(0) == 0.0 and s(5) == pytest.approx(5e-4, rel=1e-12) and s(10) == 1e-3
    assert max(s(float(t)) for t in range(steps)) == 1e-3 and s(steps - 1) == 0.0


def test_refine_spec_round_trips_through_yaml_and_equals_the_in_memory_schedule(tmp_path):
    rng = np.random.default_rng(0)
    norms = np.exp(rng.normal(0, 0.3, 500)) * np.linspace(3, 1, 500)
    s = refine_from_norms(np.arange(500) * 256.0, norms, peak=3e-3, knots=64, unit="tokens",
                          warmup=2560, filter_width=9, source="run/log.jsonl")  # fmt: skip
    from evertrain import _yaml

    path = tmp_path / "refined.yaml"
    path.write_text(_yaml.dump(s.to_spec(), sort_keys=False, default_flow_style=None))
    rebuilt = from_spec(str(path))
    assert rebuilt == s and rebuilt.unit == "tokens" and rebuilt.total == 499 * 256
    grid = np.linspace(-100, 600 * 256, 5001)
    np.testing.assert_array_equal(rebuilt(grid), s(grid))
    np.testing.assert_allclose([s(float(t)) for t in grid[::50]], s(grid[::50]), rtol=1e-12)
    with pytest.raises(ScheduleError, match="stretch"):
        s.with_total(10**6)


@pytest.mark.parametrize(
    "knots, needle",
    [
        ([[0, 1.0]], ">= 2"),
        ([[0, 1.0], [0, 0.5]], "not after"),
        ([[0, 1.5], [10, 0.0]], "knots[0][1]=1.5 must be in [0.0, 1.0]"),
        ("[[0, 1]]", "list"),
    ],
)
def test_refine_spec_validation(knots, needle):
    with pytest.raises(ScheduleError, match=re_escape(needle)):
        get("refine", knots=knots, peak=1e-3)


def test_read_grad_norms_from_a_trainer_log(tmp_path):
    log = write_log(tmp_path, [2.0, None, 1.0, 1.0, 0.0, 1.0, 1.0])
    found = read_grad_norms(log)
    assert found.skipped == 2  # the NaN (null) and the zero norm
    assert found.progress.tolist() == [0, 2, 3, 5, 6]  # step after the update - 1
    tokens = read_grad_norms(log, unit="tokens")
    assert tokens.progress.tolist() == [0, 512, 768, 1280, 1536]  # tokens before the update


def test_a_torn_last_line_is_skipped_but_a_torn_middle_line_is_an_error(tmp_path):
    log = write_log(tmp_path, [1.0] * 6)
    log.write_text(log.read_text() + '{"kind": "train", "step": 7, "tok')
    assert read_grad_norms(log).skipped == 1
    log.write_text(log.read_text() + "\n" + log.read_text().splitlines()[0] + "\n")
    with pytest.raises(ScheduleError, match=r"log.jsonl:8: not a JSON line"):
        read_grad_norms(log)


def test_cli_refine_from_a_log_writes_a_spec_that_needs_no_log(runner, tmp_path):
    log = write_log(tmp_path, [0.5] * 6 + [None, None] + [0.5] * 42)
    out = tmp_path / "spec.yaml"
    result = runner.invoke(app, ["schedule", "refine", str(log), "-o", str(out), "--peak", "1e-3",
                                 "--knots", "8"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "skipped 2 rows" in result.stderr
    assert (
        f"wrote {out}: refine from 48 gradient norms, 8 knots, peak 0.001 at 0 steps"
        in result.stdout
    )
    log.unlink()  # the spec stands alone
    s = from_spec(str(out))
    assert s.to_spec()["source"] == str(log) and s(0) == 1e-3 and s(49) == 0.0
    shown = runner.invoke(app, ["schedule", "show", str(out)])
    assert shown.exit_code == 0 and "refine  (unit: steps, total: 49 steps)" in shown.stdout


def test_cli_refine_from_csv_with_named_columns(runner, tmp_path):
    csv = tmp_path / "norms.csv"
    rows = ["it,gnorm,loss"] + [f"{10 * i},{1.0 if i != 3 else 'nan'},2.0" for i in range(30)]
    csv.write_text("\n".join(rows) + "\n")
    out = tmp_path / "spec.json"
    args = ["schedule", "refine", str(csv), "-o", str(out), "--peak", "2e-3",
            "--grad-col", "gnorm", "--step-col", "it", "--filter-width", "3"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    spec = json.loads(out.read_text())
    assert spec["name"] == "refine" and spec["knots"][0] == [0, 1.0] and spec["knots"][-1][0] == 290


@pytest.mark.parametrize(
    "make, flags, needle",
    [
        (lambda p: write_log(p, [1.0] * 10), ["--grad-col", "gn"], "no train record has 'gn'"),
        (lambda p: write_log(p, [1.0, None, None, 1.0]), [], "2 usable gradient norms (2 skipped)"),
        (lambda p: write_log(p, [1.0] * 10), ["--units", "epochs"], "--units 'epochs'"),
        (lambda p: write_log(p, [1.0] * 10), ["--knots", "1"], "--knots=1 must be >= 2"),
        (lambda p: write_log(p, [1.0] * 10), ["--filter-width", "11"], "filter_width=11"),
        (lambda p: p / "missing.jsonl", [], "no such file"),
        (lambda p: write_log(p, [1.0] * 10), ["--step-col", "it"], "has no number 'it'"),
    ],
)
def test_cli_refine_bad_input_is_one_line_and_exit_2(runner, tmp_path, make, flags, needle):
    log = make(tmp_path)
    out = tmp_path / "spec.yaml"
    result = runner.invoke(app, ["schedule", "refine", str(log), "-o", str(out), "--peak", "1e-3",
                                 *flags])  # fmt: skip
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], lines
    assert not out.exists()


def test_cli_refine_checks_the_output_before_reading(runner, tmp_path):
    result = runner.invoke(app, ["schedule", "refine", str(tmp_path / "nope.jsonl"), "-o",
                                 str(tmp_path / "spec.txt"), "--peak", "1"])  # fmt: skip
    assert result.exit_code == 2 and ".yaml, .yml or .json" in result.stderr


def test_both_families_plot(runner, tmp_path):
    spec = tmp_path / "r.yaml"
    spec.write_text("name: refine\npeak: 0.001\nknots: [[0, 0.2], [10, 1.0], [100, 0.0]]\n")
    out = tmp_path / "lr.png"
    result = runner.invoke(app, ["schedule", "plot", str(spec), "uba:peak=1e-3,total=100,phi=1",
                                 "-o", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:4] == b"\x89PNG"


# -------------------------------------------------------------------------------- torch adapter


@pytest.mark.parametrize(
    "spec",
    [
        "uba:peak=1e-3,total=40,phi=0.7,warmup=5,floor=1e-5",
        {
            "name": "refine",
            "peak": 1e-3,
            "warmup": 4,
            "knots": [[0, 0.5], [10, 1.0], [30, 0.4], [40, 0.0]],
        },  # fmt: skip
    ],
)
def test_schedule_lr_drives_torch_and_resumes(spec):
    torch = pytest.importorskip("torch")
    from evertrain.adapters.torch import ScheduleLR

    schedule = from_spec(spec)

    def make():
        model = torch.nn.Linear(2, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
        return optimizer, ScheduleLR(optimizer, spec)

    optimizer, scheduler = make()
    lrs = []
    for _ in range(25):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == [schedule(k) for k in range(25)]
    state = scheduler.state_dict()
    optimizer2, resumed = make()
    resumed.load_state_dict(state)
    assert optimizer2.param_groups[0]["lr"] == schedule(25) == optimizer.param_groups[0]["lr"]
    optimizer2.step()
    resumed.step()
    assert optimizer2.param_groups[0]["lr"] == schedule(26)


# ---------------------------------------------------------------------- from a real tiny run


def test_cli_refine_from_a_real_tiny_training_run(runner, tmp_path):
    """Train 12 tiny steps (the trainer tests' config), refine its log.jsonl, and train again on
    the refined spec: the second run's logged LRs are the refined schedule's."""
    torch = pytest.importorskip("torch")
    import random

    from evertrain.data import prepare
    from evertrain.train import run
    from tests.train.conftest import WORDS, make_config

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rng = random.Random(0)
        docs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 60))) for _ in range(300)]
        source = tmp_path / "prose.jsonl"
        source.write_text("\n".join(json.dumps({"text": doc}) for doc in docs))
        prepare([source], tmp_path / "prose", vocab_size=300, progress=False)
        data = {"prose": str(tmp_path / "prose")}
        run(make_config(tmp_path / "first", data), progress=False)
        log = tmp_path / "first" / "log.jsonl"
        out = tmp_path / "refined.yaml"
        result = runner.invoke(app, ["schedule", "refine", str(log), "-o", str(out), "--peak",
                                     "3e-3", "--units", "tokens", "--filter-width", "3"])  # fmt: skip
        assert result.exit_code == 0, result.output
        refined = from_spec(str(out))
        records = [json.loads(line) for line in log.read_text().splitlines()]
        train = [r for r in records if r["kind"] == "train"]
        assert refined.unit == "tokens" and refined.total == train[-1]["tokens"] - 256
        assert refined(refined.total) == 0.0 and max(refined.values) == 3e-3
        second = make_config(tmp_path / "second", data, schedule=refined.to_spec())
        # As in the paper, the last update's multiplier is 0 (no later weights): the trainer
        # says so in one warning line.
        with pytest.warns(UserWarning, match="the last step trains at or past its end at lr=0"):
            run(second, progress=False)
        logged = [
            json.loads(x) for x in (tmp_path / "second" / "log.jsonl").read_text().splitlines()
        ]
        lrs = [r["lr"] for r in logged if r["kind"] == "train"]
        expected = [refined(float(r["tokens"] - 256)) for r in train]
        np.testing.assert_allclose(lrs, expected, rtol=1e-12, atol=0)
    finally:
        torch.set_num_threads(threads)
