"""Every ```python and ```bash block of README.md and docs/*.md runs as written.

Page by page, blocks in page order, in one fresh working folder and one child interpreter per
page (see ``tests/docs_blocks.py``): a block may use what an earlier block of the same page made
and nothing else: no file is copied or prepared for it. One test per block, so a failure names
its page and line. Skipped: only blocks that need an optional extra that is not installed, and
the README's ``pip install`` line (installing is what ``.ci/run`` does). Long blocks are marked
``slow`` (run them with ``python -m pytest -m slow``); the reason is in the test id. Pages run
side by side (``PAGE_WORKERS``, one per CPU), each in its own child and folder.

Illustrations that must not run use another fence language (```text, ```yaml).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from .docs_blocks import DRIVER_BOOTSTRAP, REPO_ROOT, Block, doc_pages, page_blocks, write_plan

DRIVER = Path(__file__).resolve().with_name("docs_blocks.py")

#: Optional packages that `.[all]` does not install -> the extra that does.
OPTIONAL_EXTRAS = {"jax": "jax", "optax": "jax"}

#: (page, text in the block) -> why the block is slow (it becomes part of the test id). Matched
#: on content, not on position, so editing a page does not silently move a mark onto another
#: block. Only what truly takes long: every other block runs in the default suite.
SLOW = {
    # the whole pipeline: tokenizer, base, four continual runs and retrain, report (~25 s here)
    ("README.md", "evertrain demo --scale 0.05"): "demo-trains-six-models",
    # two processes, each importing torch and joining a gloo group, then training
    ("README.md", "torchrun --standalone --nproc_per_node 2"): "torchrun-2-processes",
    ("docs/train.md", "torchrun --standalone --nproc_per_node 2"): "torchrun-2-processes",
}

#: (page, text in the block) -> reason: blocks that fail because of a bug in src/ (named here,
#: reported to the owning area); the fix drops the entry. Nothing else belongs here: a block
#: that cannot run as written is fixed on its page or fenced as ```text.
XFAIL: dict[tuple[str, str], str] = {}

BASH_TIMEOUT_S = 900.0

#: Pages run side by side, each in its own child and folder, blocks in page order: at most this
#: many at once (EVERTRAIN_DOC_PAGES=1 runs them one after another).
PAGE_WORKERS = max(1, int(os.environ.get("EVERTRAIN_DOC_PAGES") or os.cpu_count() or 1))


def _imports(code: str) -> set[str]:
    return set(re.findall(r"^\s*(?:import|from)\s+([A-Za-z_][A-Za-z0-9_]*)", code, flags=re.M))


def _missing_extra(block: Block) -> str | None:
    """'jax (pip install evertrain[jax])' when the block imports an optional package not here."""
    if block.lang != "python":
        return None
    for module in sorted(_imports(block.code) & OPTIONAL_EXTRAS.keys()):
        if importlib.util.find_spec(module) is None:
            extra = OPTIONAL_EXTRAS[module]
            return f"needs the optional {module} (pip install 'evertrain[{extra}]')"
    return None


def _skip_reason(block: Block) -> str | None:
    if block.page == "README.md" and re.search(r"^\s*pip install ", block.code, flags=re.M):
        return "the install line: installing is what .ci/run does"
    if block.page == "README.md" and block.code.strip() == "python -m pytest":
        return "the test command: it runs this suite (.ci/run runs it), not a block inside it"
    return _missing_extra(block)


def _slow_reason(block: Block) -> str | None:
    for (page, needle), reason in SLOW.items():
        if page == block.page and needle in block.code:
            return reason
    return None


def _xfail_reason(block: Block) -> str | None:
    for (page, needle), reason in XFAIL.items():
        if page == block.page and needle in block.code:
            return reason
    return None


def _cases() -> list:
    cases = []
    for path in doc_pages():
        for block in page_blocks(path):
            marks = []
            name = f"{block.page}:{block.line}-{block.lang}"
            if reason := _skip_reason(block):
                marks.append(pytest.mark.skip(reason=reason))
            if reason := _slow_reason(block):
                marks.append(pytest.mark.slow)
                name += f"-{reason}"
            if reason := _xfail_reason(block):
                marks.append(pytest.mark.xfail(strict=True, reason=reason))
            cases.append(pytest.param(block, id=name, marks=marks))
    return cases


CASES = _cases()


def _planned(block: Block, selected: set[tuple[str, int]]) -> bool:
    """Run a block unless it is skipped, or slow and not selected (earlier blocks always run:
    a selected block may need what they make)."""
    if _skip_reason(block):
        return False
    return not _slow_reason(block) or (block.page, block.index) in selected


def _run_page(
    page: str,
    selected: set[tuple[str, int]],
    folder: Path,
    children: set[subprocess.Popen],
    root: Path = REPO_ROOT,
) -> dict[str, dict]:
    """Run the planned blocks of ``page`` in ``folder`` in one child; its result per block."""
    blocks = [b for b in page_blocks(root / page, root=root) if _planned(b, selected)]
    results = folder.parent / f"{folder.name}.results.json"
    plan = folder.parent / f"{folder.name}.plan.json"
    write_plan(plan, blocks, results, BASH_TIMEOUT_S)
    env = dict(os.environ)
    # `evertrain`, `python`, `torchrun` in bash blocks: the interpreter under test, not the system's
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["MPLBACKEND"] = "Agg"
    # One OpenMP thread per page unless the caller chose: pages run side by side, and torch's
    # spinning OpenMP threads on a shared CPU made one tiny training command 3-5x slower.
    env.setdefault("OMP_NUM_THREADS", "1")
    if env.get("PYTHONPATH"):  # e.g. PYTHONPATH=src in a checkout: relative to here, not the page
        env["PYTHONPATH"] = os.pathsep.join(
            os.path.abspath(entry) for entry in env["PYTHONPATH"].split(os.pathsep) if entry
        )
    # Its own process group, so that stopping the session early also stops the commands its
    # bash blocks started (see _PageRuns.close).
    with subprocess.Popen(
        [sys.executable, "-c", DRIVER_BOOTSTRAP, str(DRIVER), str(plan)],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    ) as child:
        children.add(child)
        try:
            output, _ = child.communicate(timeout=BASH_TIMEOUT_S * max(1, len(blocks)))
        except subprocess.TimeoutExpired:
            _stop(child)
            output, _ = child.communicate()
            output += "\n[the page timed out]"
        finally:
            children.discard(child)
    found = json.loads(results.read_text()) if results.exists() else {}
    if child.returncode != 0:
        for block in blocks:
            found.setdefault(
                str(block.index),
                {"ok": False, "output": f"driver died:\n{output[-4000:]}", "seconds": 0},
            )
    return found


def _stop(child: subprocess.Popen) -> None:
    """Kill a page's child and everything it started (its process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)


class _PageRuns:
    """Every page with a selected block, started together on first use, at most
    ``PAGE_WORKERS`` at a time; a test waits only for its own page."""

    def __init__(
        self,
        selected: set[tuple[str, int]],
        tmp_path_factory,
        workers: int = PAGE_WORKERS,
        root: Path = REPO_ROOT,
    ) -> None:
        self._selected = selected
        self._tmp_path_factory = tmp_path_factory
        self._root = root
        self._pool = ThreadPoolExecutor(max_workers=workers)
        self._runs: dict[str, Future] = {}
        self._children: set[subprocess.Popen] = set()

    def results(self, page: str) -> dict[str, dict]:
        if not self._runs:
            order = [path.relative_to(self._root).as_posix() for path in doc_pages(self._root)]
            for name in sorted({name for name, _ in self._selected}, key=order.index):
                folder = self._tmp_path_factory.mktemp(re.sub(r"\W", "_", name))
                self._runs[name] = self._pool.submit(
                    _run_page, name, self._selected, folder, self._children, self._root
                )
        return self._runs[page].result()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        for child in list(self._children):  # only if the session ends before its pages
            _stop(child)


@pytest.fixture(scope="session")
def page_runs(request, tmp_path_factory) -> Iterator[_PageRuns]:
    blocks = [
        item.callspec.params["block"]
        for item in request.session.items
        if getattr(item, "callspec", None)
        and "block" in item.callspec.params
        and item.originalname == "test_doc_block_runs"
    ]
    # a page whose only selected blocks are skipped is not run at all
    selected = {(block.page, block.index) for block in blocks if not _skip_reason(block)}
    runs = _PageRuns(selected, tmp_path_factory)
    yield runs
    runs.close()


@pytest.mark.parametrize("block", CASES)
def test_doc_block_runs(block: Block, page_runs: _PageRuns) -> None:
    results = page_runs.results(block.page)
    result = results.get(str(block.index))
    assert result is not None, f"{block.label} was not run (an earlier block hung?)"
    if not result["ok"]:
        earlier = [
            other.label
            for other in page_blocks(REPO_ROOT / block.page)[: block.index]
            if not results.get(str(other.index), {"ok": True})["ok"]
        ]
        note = (
            f"\n(earlier blocks of this page failed too: {', '.join(earlier)})" if earlier else ""
        )
        pytest.fail(
            f"{block.label} ({block.lang}) failed:\n{block.code}\n--- output ---\n"
            f"{result['output']}{note}",
            pytrace=False,
        )


def test_every_page_has_blocks_and_every_mark_matches_a_block() -> None:
    blocks = [block for path in doc_pages() for block in page_blocks(path)]
    pages = {block.page for block in blocks}
    assert {"README.md", "docs/laws.md", "docs/schedules.md"} <= pages
    for page, needle in [*SLOW, *XFAIL]:
        assert any(b.page == page and needle in b.code for b in blocks), (page, needle)


def test_ci_runs_exactly_the_readme_install_and_test_commands() -> None:
    """.ci/run must install and test as the README tells a user to, in a fresh virtualenv."""
    readme = {b.code.strip() for b in page_blocks(REPO_ROOT / "README.md") if b.lang == "bash"}
    install = next(code for code in readme if code.startswith("pip install "))
    pip_part = install.split("&&")[0].strip()
    assert "python -m pytest" in readme
    ci = (REPO_ROOT / ".ci" / "run").read_text().splitlines()
    assert f"python -m {pip_part.replace('pip install ', 'pip install -q ', 1)}" in ci
    assert ci[-1] == "python -m pytest"
    assert any(re.match(r"python3? -m venv ", line) for line in ci)  # no system site-packages
    assert not any("--system-site-packages" in line for line in ci)


# --- the harness itself ----------------------------------------------------------------------

_SAMPLE_PAGE = """# A page

```python
from pathlib import Path
Path("made.txt").write_text("from python")
shared = 41
```

```text
not run: an illustration
```

```bash
test "$(cat made.txt)" = "from python"
command -v python | grep -q "^$BIN/"
echo from-bash > bash.txt
```

```python
assert shared + 1 == 42 and Path("bash.txt").read_text() == "from-bash\\n"
raise RuntimeError("this block fails")
```

```bash
false
echo never
```

```python
print("still run after a failure:", shared)
```
"""


def test_harness_runs_a_page_in_order_in_one_folder_and_reports_each_block(tmp_path):
    """python blocks share one namespace, bash sees their files and the interpreter under test,
    a failing block is reported and the blocks after it still run."""
    from . import docs_blocks

    (tmp_path / "docs").mkdir()
    page = tmp_path / "docs" / "sample.md"
    page.write_text(_SAMPLE_PAGE)
    blocks = page_blocks(page, root=tmp_path)
    assert [(b.lang, b.line) for b in blocks] == [
        ("python", 3),
        ("bash", 13),
        ("python", 19),
        ("bash", 24),
        ("python", 29),
    ]
    work = tmp_path / "work"
    work.mkdir()
    plan = tmp_path / "plan.json"
    results = tmp_path / "results.json"
    write_plan(plan, blocks, results, 60)
    env = dict(os.environ, BIN=os.path.dirname(sys.executable))
    env["PATH"] = env["BIN"] + os.pathsep + env.get("PATH", "")
    subprocess.run(
        [sys.executable, "-c", docs_blocks.DRIVER_BOOTSTRAP, str(DRIVER), str(plan)],
        cwd=work,
        env=env,
        check=True,
        timeout=120,
    )
    found = json.loads(results.read_text())
    assert [found[str(i)]["ok"] for i in range(5)] == [True, True, False, False, True]
    assert "RuntimeError: this block fails" in found["2"]["output"]
    assert "docs/sample.md:19" in found["2"]["output"]  # the traceback names page and line
    assert "never" not in found["3"]["output"] and "[exit code 1]" in found["3"]["output"]
    assert "still run after a failure: 41" in found["4"]["output"]
    assert sorted(p.name for p in work.iterdir()) == ["bash.txt", "made.txt"]


def test_blocks_that_need_a_missing_extra_skip_and_say_which(monkeypatch):
    block = Block("docs/x.md", 0, 1, "python", "import numpy\nimport optax\n")
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "optax" else real(name, *a)
    )
    assert _skip_reason(block) == "needs the optional optax (pip install 'evertrain[jax]')"
    assert _skip_reason(Block("docs/x.md", 0, 1, "python", "import numpy\n")) is None


def test_pages_run_side_by_side_each_in_its_own_folder_with_one_openmp_thread(
    tmp_path, tmp_path_factory, monkeypatch
):
    """The first page waits for a mark the second page makes: both run at once, in order within
    a page, each in its own empty folder, and torch's OpenMP gets one thread unless set."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    mark = tmp_path / "second-page-started"
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text(
        "```bash\n"
        f"for i in $(seq 100); do test -e {mark} && break; sleep 0.1; done\n"
        f'test -e {mark} && test -z "$(ls)" && echo first > own.txt\n'
        '```\n\n```bash\ntest "$(cat own.txt)" = first\n```\n'
    )
    (tmp_path / "docs" / "b.md").write_text(
        f'```bash\ntouch {mark}\necho "$OMP_NUM_THREADS" > threads.txt\n```\n'
    )
    selected = {("README.md", 0), ("README.md", 1), ("docs/b.md", 0)}
    runs = _PageRuns(selected, tmp_path_factory, workers=2, root=tmp_path)
    try:
        readme, other = runs.results("README.md"), runs.results("docs/b.md")
    finally:
        runs.close()
    assert [readme["0"]["ok"], readme["1"]["ok"], other["0"]["ok"]] == [True, True, True], (
        readme,
        other,
    )
    # mktemp's folder docs_b_md<N>, and pytest's docs_b_mdcurrent link to it
    (threads,) = {path.resolve() for path in tmp_path.parent.glob("docs_b_md*/threads.txt")}
    assert threads.read_text() == "1\n"
