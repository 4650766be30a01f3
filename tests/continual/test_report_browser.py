"""Open the report in a real headless browser and check the figures are painted.

Skipped when no chromium is installed (Debian: ``apt-get install -y chromium``); the
always-run tests in test_report.py parse the HTML instead.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from evertrain.continual.report import write_report

BROWSER = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
    None,
)


@pytest.mark.skipif(BROWSER is None, reason="no chromium/chrome on PATH")
def test_report_renders_its_figures_in_a_headless_browser(tmp_path, make_run):
    matplotlib_image = pytest.importorskip("matplotlib.image")
    runs = [
        make_run(
            tmp_path,
            name,
            evals=[(500, {"d0": 3.0 + i, "d1": 4.0}), (1000, {"d0": 2.0 + i, "d1": 3.0})],
            train=[(t, 1e-3, {"d0": t}) for t in range(100, 1001, 100)],
        )
        for i, name in enumerate(("a", "b"))
    ]
    page = write_report(runs, tmp_path / "report")
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            BROWSER,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--screenshot={shot}",
            "--window-size=1000,2400",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    pixels = matplotlib_image.imread(shot)[..., :3]
    assert pixels.shape[:2] == (2400, 1000)
    # The embedded PNGs paint coloured plot lines; a page whose images failed to load would be
    # white and grey only (text, table borders).
    saturation = pixels.max(axis=2) - pixels.min(axis=2)
    coloured_rows = (saturation > 0.3).any(axis=1)
    assert coloured_rows.sum() > 300
