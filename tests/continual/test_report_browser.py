"""Open the interactive report in a real headless Chromium: it renders without script errors, its
charts hold the runs' series with every point, the legend, log-axis, x-unit, zoom and hover
controls work, and a screenshot shows coloured charts.

No Python driver: Chromium's own ``--dump-dom`` and ``--screenshot`` are run as subprocesses.
To exercise the controls, the test writes a copy of the page with a probe script appended: it
clicks the page's real controls (dispatching DOM events), records what the page then draws, and
writes the record into the DOM, which ``--dump-dom`` returns. Skipped when no chromium is
installed (Debian: ``apt-get install -y chromium``; `.ci/run` installs it).
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from evertrain.continual.report import write_report
from evertrain.continual.report_page import embedded_data

BROWSER = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
    None,
)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no chromium/chrome on PATH")

# The machine may have no network: nothing Chromium would fetch or phone home is enabled.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1280,2400",
]

# Collects uncaught errors before the page's own script runs.
ERROR_TRAP = """<script>window.__errors = [];
window.addEventListener("error", function (e) { window.__errors.push(String(e.message)); });
</script>"""

# Runs after the page's script: uses the page's controls as a user would and records the result.
PROBE = """<script>(function () {
  var R = window.evertrainReport, out = { errors: window.__errors, steps: {} };
  function names(id) { return R.series(id).map(function (s) { return s.name; }); }
  function ticks(id, axis) {
    var svg = document.querySelector('svg.chart[data-panel="' + id + '"]');
    return Array.prototype.map.call(svg.querySelectorAll("text.tick-" + axis), function (t) { return t.textContent; });
  }
  function svgOf(id) { return document.querySelector('svg.chart[data-panel="' + id + '"]'); }
  try {
    out.panels = {};
    R.data.curves.panels.forEach(function (p) { out.panels[p.id] = R.series(p.id); });
    var item = document.querySelector('.legend-item[data-run="1"]');
    item.click();
    out.afterHide = names("avg");
    out.hiddenItemClass = item.className;
    item.click();
    out.afterShow = names("avg");
    var logy = document.querySelector('input.logy[data-panel="lr"]');
    out.lrScale = [svgOf("lr").getAttribute("data-yscale"), ticks("lr", "y")];
    logy.click();
    out.lrLogScale = [svgOf("lr").getAttribute("data-yscale"), ticks("lr", "y")];
    out.xTicksTokens = ticks("avg", "x");
    document.getElementById("xkey-steps").click();
    out.xKey = svgOf("avg").getAttribute("data-xkey");
    out.xTicksSteps = ticks("avg", "x");
    document.getElementById("xkey-x").click();
    // drag across the middle third of the average-loss panel: every panel zooms to that range
    var overlay = svgOf("avg").querySelector("rect.overlay"), box = overlay.getBoundingClientRect();
    var y = box.top + box.height / 2;
    function mouse(type, x) {
      overlay.dispatchEvent(new MouseEvent(type, { clientX: x, clientY: y, bubbles: true }));
    }
    mouse("mousedown", box.left + box.width / 3);
    mouse("mousemove", box.left + 2 * box.width / 3);
    mouse("mouseup", box.left + 2 * box.width / 3);
    out.zoomDomain = R.state.domain;
    out.zoomTicks = ticks("lr", "x");
    document.getElementById("reset-zoom").click();
    out.resetDomain = R.state.domain;
    // hover the first point of the first run's average-loss curve: the tooltip names that run
    var path = svgOf("avg").querySelector('path.series[data-run="0"]');
    var m = /M([-\\d.]+) ([-\\d.]+)/.exec(path.getAttribute("d"));
    var svgBox = svgOf("avg").getBoundingClientRect(), target = svgOf("avg").querySelector("rect.overlay");
    target.dispatchEvent(new MouseEvent("mousemove", {
      clientX: svgBox.left + parseFloat(m[1]) + 2, clientY: svgBox.top + parseFloat(m[2]) + 1, bubbles: true }));
    var tip = document.getElementById("tooltip");
    out.tooltip = tip ? [tip.style.display, tip.textContent] : null;
    out.barValues = Array.prototype.map.call(
      document.querySelectorAll('svg[data-bars="loss_avg"] text.bar-value'), function (t) { return t.textContent; });
  } catch (error) { out.errors.push("probe: " + error); }
  var pre = document.createElement("pre");
  pre.id = "probe-result";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();</script>"""


def _chromium(*args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:  # a fresh profile: no state between tests
        return subprocess.run(
            [BROWSER, *FLAGS, f"--user-data-dir={profile}", *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )


def _probe(page: Path) -> dict:
    text = page.read_text()
    probed = page.with_name("probed.html")
    probed.write_text(
        text.replace("<head>", "<head>" + ERROR_TRAP, 1).replace("</body>", PROBE + "</body>")
    )
    dom = _chromium("--dump-dom", probed.as_uri()).stdout
    found = re.search(r'<pre id="probe-result">(.*?)</pre>', dom, re.S)
    assert found, "the probe did not run: the page's script failed before it (see the DOM)"
    return json.loads(html.unescape(found.group(1)))


def _runs(tmp_path: Path, make_run, evals_per_stage: int = 12) -> list[Path]:
    """A base and two continual stages from it (dense evaluations), and a retrain baseline."""
    base = make_run(
        tmp_path,
        "base",
        evals=[(t, {"d0": 9.0 - t / 400, "d1": 9.5 - t / 500}) for t in range(200, 2001, 200)],
        train=[(t, 1e-3 * t / 2000, {"d0": t}) for t in range(100, 2001, 100)],
        meta={"name": "base", "recipe": "base", "old": [], "new": ["d0"]},
    )
    parent = {"checkpoint": str(base / "checkpoints" / "final"), "run": str(base)}
    stages = []
    for i, recipe in enumerate(("finetune", "rewarm+replay")):
        step = 1000 // evals_per_stage
        stages.append(
            make_run(
                tmp_path,
                recipe,
                evals=[
                    (t, {"d0": 4.0 + 0.1 * i + t / 10_000, "d1": 5.0 - t / 1000})
                    for t in range(step, step * evals_per_stage + 1, step)
                ],
                train=[
                    (t, 2e-4 * (i + 1), {"d0": t // 4, "d1": t - t // 4})
                    for t in range(50, 1001, 50)
                ],
                meta={
                    "name": recipe,
                    "recipe": recipe,
                    "old": ["d0"],
                    "new": ["d1"],
                    "offset_tokens": 2000,
                },
                parent=parent,
            )
        )
    retrain = make_run(
        tmp_path,
        "retrain",
        evals=[(t, {"d0": 8.0 - t / 500, "d1": 8.0 - t / 600}) for t in range(300, 3001, 300)],
        train=[(t, 1e-3, {"d0": t // 2, "d1": t - t // 2}) for t in range(100, 3001, 100)],
        meta={"name": "retrain", "recipe": "retrain", "old": ["d0"], "new": ["d1"]},
    )
    return [base, *stages, retrain]


def test_report_renders_and_its_controls_work_in_headless_chromium(tmp_path, make_run):
    page = write_report(_runs(tmp_path, make_run), tmp_path / "report")
    data = embedded_data(page.read_text())
    result = _probe(page)
    assert result["errors"] == []

    # every panel draws every run that has data there, with every point of the embedded series
    for panel in data["curves"]["panels"]:
        expected = [
            {"name": run["name"], "points": len(series["x"])}
            for run, series in zip(data["runs"], panel["series"], strict=True)
            if series["x"]
        ]
        assert result["panels"][panel["id"]] == expected, panel["id"]
    assert [s["points"] for s in result["panels"]["loss:d0"]] == [
        10,
        13,
        13,
        10,
    ]  # 12 evals + start

    names = ["base", "finetune", "rewarm+replay", "retrain"]
    assert result["afterHide"] == ["base", "rewarm+replay", "retrain"]  # legend click hides a run
    assert "off" in result["hiddenItemClass"]
    assert result["afterShow"] == names

    linear, log = result["lrScale"], result["lrLogScale"]
    assert linear[0] == "linear" and log[0] == "log" and linear[1] != log[1]

    assert result["xKey"] == "steps" and result["xTicksSteps"] != result["xTicksTokens"]

    low, high = result["zoomDomain"]  # dragging over the middle third zooms x, reset undoes it
    assert 900 < low < 1200 and 1900 < high < 2200
    assert result["resetDomain"] is None

    shown, text = result["tooltip"]
    assert shown == "block" and "base" in text and "tokens 200 ·" in text

    # the summary bars print each run's final average loss
    rows = {r["run"]: r for r in json.loads((page.parent / "report.json").read_text())["runs"]}
    assert result["barValues"] == [f"{rows[n]['loss_avg']:.4f}" for n in names]


def test_report_screenshot_shows_coloured_charts(tmp_path, make_run):
    matplotlib_image = pytest.importorskip("matplotlib.image")
    page = write_report(_runs(tmp_path, make_run), tmp_path / "report")
    shot = tmp_path / "shot.png"
    _chromium(f"--screenshot={shot}", page.as_uri())
    pixels = matplotlib_image.imread(shot)[..., :3]
    assert pixels.shape[:2] == (2400, 1280)
    assert pixels.std() > 0.05  # not a blank page
    # the charts are drawn in colour; a page whose script failed shows black/grey text only
    saturation = pixels.max(axis=2) - pixels.min(axis=2)
    coloured_rows = (saturation > 0.3).any(axis=1)
    assert coloured_rows.sum() > 300
