"""The fenced ```python / ```bash blocks of README.md and docs/*.md, and the driver that runs a page.

``tests/test_docs.py`` runs every page in its own empty working folder, blocks in page order, in
ONE child interpreter per page: python blocks share one namespace (as if typed into one session),
bash blocks run with ``bash -e -o pipefail`` from that interpreter, with the test interpreter's
``bin`` folder first on PATH so ``evertrain`` and ``python`` are the ones under test. A child keeps
JAX threads, torch state and matplotlib out of the pytest process (other tests later fork it).

The driver half of this file runs inside that child: it is started as
``python -c "<DRIVER_BOOTSTRAP>" PLAN.json`` so the child's ``sys.path[0]`` is the page's working
folder, exactly as for a user running python there (``tests/`` is never on it).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

# A fence at the start of a line, the language, the body, the closing fence at the start of a line.
_FENCE = re.compile(r"^```(python|bash)[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)


@dataclass(frozen=True)
class Block:
    """One fenced block: its page (relative to the repository), position and code."""

    page: str
    index: int
    line: int
    lang: str
    code: str

    @property
    def label(self) -> str:
        return f"{self.page}:{self.line}"


def doc_pages(root: Path = REPO_ROOT) -> list[Path]:
    """README.md and every docs/*.md, in a fixed order."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def page_blocks(path: Path, root: Path = REPO_ROOT) -> list[Block]:
    """Every ```python / ```bash block of one page, in order, with the line of its opening fence."""
    text = path.read_text(encoding="utf-8")
    page = path.relative_to(root).as_posix()
    return [
        Block(page, index, text.count("\n", 0, match.start()) + 1, match.group(1), match.group(2))
        for index, match in enumerate(_FENCE.finditer(text))
    ]


# --------------------------------------------------------------------------------------------
# The driver (runs in the child interpreter)
# --------------------------------------------------------------------------------------------

#: ``python -c`` source that loads this file by path (not as ``tests.docs_blocks``) and drives.
DRIVER_BOOTSTRAP = "import runpy, sys; runpy.run_path(sys.argv[1], run_name='__docs_driver__')['drive'](sys.argv[2])"
_TAIL = 6000


def _tail(text: str) -> str:
    return text if len(text) <= _TAIL else "...\n" + text[-_TAIL:]


def _run_python(code: str, label: str, namespace: dict) -> tuple[bool, str]:
    import contextlib
    import io
    import traceback

    output = io.StringIO()
    ok = True
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        try:
            exec(compile(code, label, "exec"), namespace)  # noqa: S102 -- the docs, as written
        except BaseException:  # noqa: BLE001 -- SystemExit included: report, go on
            ok = False
            traceback.print_exc()
    return ok, output.getvalue()


def _run_bash(code: str, timeout: float) -> tuple[bool, str]:
    import subprocess

    try:
        done = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", code],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as error:
        out = (error.stdout or b"").decode() if isinstance(error.stdout, bytes) else error.stdout
        return False, f"{out or ''}\n[timed out after {timeout:.0f} s]"
    return done.returncode == 0, done.stdout + done.stderr + f"\n[exit code {done.returncode}]"


def write_plan(path: Path, blocks: list[Block], results: Path, bash_timeout: float) -> None:
    """The plan :func:`drive` reads: the blocks to run in order, where to write their results."""
    plan = {
        "blocks": [
            {"index": b.index, "lang": b.lang, "code": b.code, "label": b.label} for b in blocks
        ],
        "results": str(results),
        "bash_timeout": bash_timeout,
    }
    path.write_text(json.dumps(plan))


def drive(plan_path: str) -> None:
    """Run the blocks of one page listed in PLAN.json; write each result as soon as it is known."""
    import json
    import os
    import time

    plan = json.loads(Path(plan_path).read_text())
    results: dict[str, dict] = {}
    namespace: dict = {"__name__": "__main__"}
    for block in plan["blocks"]:
        start = time.perf_counter()
        if block["lang"] == "python":
            ok, output = _run_python(block["code"], block["label"], namespace)
        else:
            ok, output = _run_bash(block["code"], plan["bash_timeout"])
        results[str(block["index"])] = {
            "ok": ok,
            "output": _tail(output),
            "seconds": round(time.perf_counter() - start, 2),
        }
        tmp = plan["results"] + ".tmp"
        Path(tmp).write_text(json.dumps(results))
        os.replace(tmp, plan["results"])
