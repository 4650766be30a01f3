"""`evertrain demo` on a user's data, without training: inputs checked before any work, an
earlier demo's runs re-used only for the same inputs, --force, cuts said on the console."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from evertrain.cli import app
from evertrain.continual import demo as D
from evertrain.continual.runner import ContinualError

from ..lock_holder import lock_held_elsewhere

runner = CliRunner()


def _invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def _error_line(result) -> str:
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output  # one line, no traceback
    return lines[0]


@pytest.fixture
def texts(tmp_path):
    old, new = tmp_path / "english.txt", tmp_path / "german.txt"
    old.write_text("An English paragraph.\n\nAnother one.\n" * 20)
    new.write_text("Ein deutscher Absatz.\n\nNoch einer.\n" * 20)
    return old, new


def test_data_with_one_path_names_the_flag_instead_of_swallowing_out(tmp_path, texts):
    result = _invoke("demo", "--data", texts[0], "--out", tmp_path / "X")
    assert result.exit_code == 2
    line = _error_line(result)
    assert line.startswith("error: --data needs two paths, OLD and NEW")
    assert "got '" in line and "before --out" in line
    assert not (tmp_path / "X").exists()


def test_a_missing_second_path_is_found_before_any_work(tmp_path, texts, monkeypatch):
    import evertrain.data

    def no_training(*args, **kwargs):  # the bug trained the tokenizer first
        raise AssertionError("the tokenizer was trained before the inputs were checked")

    monkeypatch.setattr(evertrain.data, "train_tokenizer", no_training)
    result = _invoke("demo", "--data", texts[0], tmp_path / "missing.txt", "--out", tmp_path / "X")
    assert result.exit_code == 2
    line = _error_line(result)
    assert line.startswith("error: --data NEW: source") and "missing.txt" in line
    assert not (tmp_path / "X").exists()  # no demo.json left behind


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "a.txt", "b.txt", "c.txt"], "unexpected argument 'c.txt'"),
        (["--old", "a.txt"], "--old given alone"),
        (["--scael", "2"], "no such option: --scael"),
        (["--max-bytes", "-1"], "--max-bytes -1 must be a whole number >= 0"),
        (["--txt-separator", ""], "--txt-separator '' must be a non-empty string"),
        (["--device", "tpu"], "--device 'tpu' must be cpu, cuda or auto"),
    ],
)
def test_bad_demo_options_are_one_line_errors(tmp_path, args, message):
    result = _invoke("demo", *args, "--out", tmp_path / "X")
    assert result.exit_code == 2
    assert message in _error_line(result)
    assert not (tmp_path / "X").exists()


def test_sources_are_checked_by_kind(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.doc").write_text("x")
    with pytest.raises(ContinualError, match="--data OLD: folder .* holds no .txt, .jsonl"):
        D.check_sources([str(tmp_path / "empty"), "stdlib-code"])
    with pytest.raises(ContinualError, match="--data NEW: .*suffix '.doc'"):
        D.check_sources(["stdlib-code", str(tmp_path / "notes.doc")])
    with pytest.raises(ContinualError, match="takes exactly two"):
        D.check_sources(["stdlib-code"])
    assert D.check_sources(None) == D.DEFAULT_SOURCES


def test_old_and_new_options_are_the_same_as_data(tmp_path, texts, monkeypatch):
    seen = {}

    def fake_run_demo(out, **kwargs):
        seen.update(kwargs)
        raise ContinualError("stop here")

    monkeypatch.setattr(D, "run_demo", fake_run_demo)
    _invoke("demo", "--old", texts[0], "--new", texts[1], "--txt-separator", "\\n\\n")
    assert seen["data"] == (str(texts[0]), str(texts[1]))
    assert seen["txt_separator"] == "\n\n"  # the shell's \n\n read as two newlines


def _fake_demo_folder(out: Path, inputs: dict) -> None:
    (out / "runs" / "base").mkdir(parents=True)
    (out / "runs" / "base" / "continual.json").write_text("{}")
    (out / "demo.json").write_text(json.dumps({"inputs": inputs}))


def test_other_inputs_are_refused_naming_each_difference(tmp_path, texts):
    settings = D.demo_settings(0.05)
    english_german = D.demo_inputs(tuple(map(str, texts)), settings, None, "cpu")
    _fake_demo_folder(tmp_path / "d", english_german)
    D.check_reuse(tmp_path / "d", english_german)  # the same inputs: re-used
    swapped = D.demo_inputs((str(texts[1]), str(texts[0])), settings, "\n\n", "cpu")
    with pytest.raises(ContinualError) as error:
        D.check_reuse(tmp_path / "d", swapped)
    message = str(error.value)
    assert f"--data OLD: {texts[0]} -> {texts[1]}" in message
    assert f"--data NEW: {texts[1]} -> {texts[0]}" in message
    assert "--txt-separator: None -> '\\n\\n'" in message
    assert "--force" in message and "another --out" in message
    bigger = D.demo_inputs(tuple(map(str, texts)), D.demo_settings(0.1), None, "cpu")
    with pytest.raises(ContinualError, match=r"\(--scale: 0.05 -> 0.1\)"):
        D.check_reuse(tmp_path / "d", bigger)
    # the same path with other content is another input too
    texts[0].write_text("Something else entirely, and longer than before.\n" * 50)
    edited = D.demo_inputs(tuple(map(str, texts)), settings, None, "cpu")
    with pytest.raises(ContinualError, match="--data OLD: .*english.txt changed since"):
        D.check_reuse(tmp_path / "d", edited)


def test_a_folder_without_runs_takes_any_inputs(tmp_path, texts):
    settings = D.demo_settings(0.05)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "demo.json").write_text(json.dumps({"inputs": {"settings": {"scale": 9}}}))
    D.check_reuse(tmp_path / "d", D.demo_inputs(tuple(map(str, texts)), settings, None, "cpu"))


def test_a_legacy_demo_json_still_names_swapped_sources(tmp_path):
    settings = D.demo_settings(0.05)
    out = tmp_path / "d"
    _fake_demo_folder(out, {})
    legacy = {
        "settings": json.loads(json.dumps(settings.__dict__)),
        "sources": list(D.DEFAULT_SOURCES),
    }
    (out / "demo.json").write_text(json.dumps(legacy))
    swapped = D.demo_inputs(("stdlib-code", "stdlib-english"), settings, None, "cpu")
    with pytest.raises(ContinualError, match="--data OLD: stdlib-english -> stdlib-code"):
        D.check_reuse(out, swapped)


def test_force_removes_only_what_the_demo_wrote(tmp_path):
    out = tmp_path / "d"
    for name in ("base", "rewarm"):
        (out / "runs" / name / "checkpoints").mkdir(parents=True)
        (out / "runs" / name / "continual.json").write_text("{}")
    (out / "runs" / "mine").mkdir()  # not a demo run
    (out / "data" / "D0").mkdir(parents=True)
    (out / "data" / "D0" / "manifest.json").write_text("{}")
    (out / "data" / "tokenizer.json").write_text("{}")
    (out / "report").mkdir()
    (out / "report" / "index.html").write_text("<html>")
    (out / "report" / "my-notes.md").write_text("keep")
    (out / "demo.json").write_text("{}")
    (out / "notes.txt").write_text("keep")
    D.clear_demo_outputs(out)
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert left == ["notes.txt", "report", "report/my-notes.md", "runs", "runs/mine"]


def test_cuts_at_max_bytes_are_said_with_the_share_used(tmp_path):
    source = tmp_path / "book.txt"
    source.write_text("x" * 4000)
    prepared = tmp_path / "D0"
    prepared.mkdir()
    stats = {"source": str(source), "bytes": 1000, "truncated_at_max_bytes": True}
    (prepared / "manifest.json").write_text(json.dumps({"sources": [stats]}))
    whole = tmp_path / "D1"
    whole.mkdir()
    (whole / "manifest.json").write_text(json.dumps({"sources": [{"bytes": 10}]}))
    notices = D.truncation_notices(
        {"D0": str(prepared), "D1": str(whole)}, (str(source), "stdlib-code"), 1000
    )
    assert notices == [
        "D0 book.txt: using the first 1,000 bytes of about 4,000 (25 %) "
        "(--max-bytes 1000; --max-bytes 0 uses all of it)"
    ]


def test_a_real_cut_is_printed_before_training(tmp_path, texts, capsys):
    pytest.importorskip("tokenizers")
    settings = D.DemoSettings(**{**D.demo_settings(0.05).__dict__, "vocab_size": 300})
    settings = dataclasses.replace(settings, max_bytes=300)
    paths = D.prepare_data(
        tmp_path, tuple(map(str, texts)), settings, progress=False, txt_separator="\n\n"
    )
    notices = D.truncation_notices(paths, tuple(map(str, texts)), 300)
    assert len(notices) == 2 and notices[0].startswith("D0 english.txt: using the first ")
    assert "(--max-bytes 300; --max-bytes 0 uses all of it)" in notices[0]


def test_the_dispatcher_starts_the_longest_ready_run(monkeypatch, tmp_path):
    order = []
    marker = tmp_path / "pre-anneal"

    def fake_job(kind, kwargs, threads):
        order.append(kind)
        if kind == "base":
            marker.write_text("")
        return {"tokens": 0, "params": 0}

    monkeypatch.setattr(D, "_job", fake_job)
    jobs = D.demo_jobs(base_tokens=240, stage_tokens=240, pre_anneal=216)

    def reached(name, fraction, done):
        return name in done or (fraction < 1 and marker.exists())

    class Bar:
        n = 0

        def set_postfix_str(self, *a, **k): ...

        def refresh(self): ...

    D._dispatch(jobs, {j.name: {} for j in jobs}, 1, 1, reached, Bar(), {})
    assert order == ["retrain", "base", "finetune", "rewarm", "rewarm+replay", "infinite+replay"]


def test_a_second_demo_on_a_held_folder_is_a_one_line_error(tmp_path):
    with lock_held_elsewhere(tmp_path / "d", "demo folder") as holder:
        result = _invoke("demo", "--scale", "0.05", "--out", tmp_path / "d")
    assert result.exit_code == 2
    line = _error_line(result)
    assert line.startswith(f"error: demo folder {tmp_path / 'd'} is in use by pid {holder.pid}")


def test_a_base_too_short_for_its_pre_anneal_checkpoint_is_refused_before_any_work(tmp_path):
    short = D.DemoSettings(**{**D.demo_settings(0.05).__dict__, "base_tokens": 2048})
    with pytest.raises(ContinualError, match="settings.base_tokens=2048 is 2 optimizer step"):
        D.run_demo(tmp_path / "d", settings=short, progress=False)
    assert not (tmp_path / "d").exists()
