"""A two-stage plan on the real trainer at a toy size (default suite, a few seconds):
infinite base -> 'continue' with replay from its pre-anneal checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("tokenizers")

from evertrain.continual.forgetting import stage_outcome  # noqa: E402
from evertrain.continual.plan import load_plan  # noqa: E402
from evertrain.continual.runner import ContinualError, run_plan  # noqa: E402
from evertrain.continual.runs import load_run  # noqa: E402


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory) -> dict[str, str]:
    from evertrain.data import prepare, train_tokenizer

    root = tmp_path_factory.mktemp("data")
    tokenizer = train_tokenizer(
        ["stdlib-english", "stdlib-code"], root / "tok.json", 300, max_bytes=30_000
    )
    return {
        name: str(
            prepare(
                [source], root / name, tokenizer=tokenizer, max_bytes=30_000, progress=False
            ).path
        )
        for name, source in (("english", "stdlib-english"), ("code", "stdlib-code"))
    }


def test_plan_continues_the_infinite_base_from_its_pre_anneal_checkpoint(toy_data, tmp_path):
    import shutil

    code_data = tmp_path / "code"  # a copy: re-prepared from other text at the end
    shutil.copytree(toy_data["code"], code_data)
    plan = load_plan(
        {
            "out_dir": str(tmp_path / "plan"),
            "peak": 2e-3,
            "model": {"n_layer": 1, "n_head": 2, "d_model": 32, "seq_len": 32},
            "train": {"batch_size": 4, "device": "cpu", "eval_tokens": 256},
            "stages": [
                {
                    "name": "base",
                    "datasets": {"english": toy_data["english"]},
                    "tokens": 1280,
                    "schedule": "infinite",
                    "anneal_fraction": 0.2,
                },
                {
                    "name": "code",
                    "datasets": {"code": str(code_data)},
                    "tokens": 1280,
                    "schedule": "continue",
                    "replay": 0.25,
                    "anneal_fraction": 0.2,
                },
            ],
        }
    )
    base, code = run_plan(plan, progress=False)
    assert base.tokens == code.tokens == 1280
    base_run, code_run = load_run(base.out_dir), load_run(code.out_dir)
    # the base pinned its pre-anneal checkpoint (80% of 1280 = 1024 tokens = 8 steps of 128)
    assert base_run.meta["pre_anneal_tokens"] == 1024
    assert Path(code_run.parent["checkpoint"]).name == "tokens_1024"
    assert code_run.meta["offset_tokens"] == 1024 and code_run.meta["old"] == ["english"]
    # the new stage starts at the base's constant LR (half the peak) and anneals at the end
    base_lr = {r["tokens"]: r["lr"] for r in base_run.train_records}
    code_lrs = [r["lr"] for r in code_run.train_records]
    assert code_lrs[0] == pytest.approx(1e-3) == pytest.approx(base_lr[1024])
    assert code_lrs[-1] < code_lrs[0]
    assert set(code_run.train_records[-1]["tokens_per_source"]) == {"english", "code"}
    # forgetting/adaptation are measured against the pre-anneal checkpoint's eval
    outcome = stage_outcome(code_run)
    assert outcome.before == pytest.approx(
        next(e["eval"] for e in base_run.manifest["checkpoints"] if e["name"] == "tokens_1024")
    )
    assert outcome.adaptation == pytest.approx(outcome.before["code"] - outcome.after["code"])
    # running the plan again re-reads the finished runs instead of training them again
    again = run_plan(plan, progress=False)
    assert [r.wall_seconds for r in again] == [base.wall_seconds, code.wall_seconds]
    changed = plan.model_copy(deep=True)
    changed.stages[1].replay = 0.5
    with pytest.raises(
        ContinualError, match=r"another configuration \(config.data.mixture.english"
    ):
        run_plan(changed, progress=False)
    # the same paths holding other data: the finished stage is not re-used for it
    from evertrain.data import prepare

    prepare(
        ["stdlib-english"],
        code_data,
        tokenizer=code_data / "tokenizer.json",
        max_bytes=20_000,
        progress=False,
        overwrite=True,
    )
    with pytest.raises(
        ContinualError,
        match=r"base holds a run of another configuration \(data.eval.code.shards_sha256.train: ",
    ):
        run_plan(plan, progress=False)


def test_base_schedule_with_a_hold_anneals_earlier_and_keeps_the_floor_to_the_end():
    from evertrain.continual.runner import Setup, base_schedule, planned_base_info

    setup = Setup(model={"seq_len": 64}, train={"batch_size": 16}, eval={})  # 1024 tokens a step
    tokens = setup.whole_steps(3_000_000)
    plain, plain_pre = base_schedule(setup, tokens, 1e-2)
    held, held_pre = base_schedule(setup, tokens, 1e-2, hold_fraction=0.25)
    anneal_end = setup.round_tokens(0.75 * tokens)
    # the anneal is as long as without a hold, and starts a hold's length earlier
    assert anneal_end - held_pre == tokens - plain_pre
    assert held_pre % 1024 == 0 and anneal_end % 1024 == 0
    assert held(held_pre) == pytest.approx(5e-3) and held(held_pre - 1024) == pytest.approx(5e-3)
    assert held(anneal_end) == pytest.approx(1e-3) and held(tokens - 1) == pytest.approx(1e-3)
    assert held((held_pre + anneal_end) / 2) == pytest.approx(3e-3, rel=1e-3)  # linear anneal
    assert plain(held_pre) == pytest.approx(5e-3)  # without a hold: still constant there
    info = planned_base_info(setup, tokens, 1e-2, hold_fraction=0.25)
    assert (info.constant_lr, info.final_lr, info.floor) == pytest.approx((5e-3, 1e-3, 1e-3))
    with pytest.raises(ContinualError, match="hold_fraction=0.95"):
        base_schedule(setup, tokens, 1e-2, hold_fraction=0.95)
