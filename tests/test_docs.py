"""Every ```python block of README.md and docs/*.md runs, in order, page by page.

The blocks of one page share one namespace (a later block may use an earlier block's names)
and one temporary working directory, so nothing is written into the repository. A block that
cannot run here is marked in its page with an HTML comment on the line right before it::

    <!-- docs-test: skip (downloads ImageNet weights) -->

and becomes a skipped test with that reason.
"""

import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["README.md", *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))]

# a ```python fence, and the HTML comment on the line right before it if there is one
BLOCK = re.compile(
    r"(?:<!--\s*docs-test:\s*(?P<directive>.*?)\s*-->[ \t]*\n)?^```python[ \t]*\n(?P<code>.*?)^```",
    re.S | re.M,
)
SKIP = re.compile(r"skip\s*\((?P<reason>.+)\)", re.S)

# pages whose blocks read files another page's block writes: run that block first, in the
# page's working directory
SETUP = {"docs/training.md": [("docs/cli.md", 0)]}  # cli.md writes the cells/ PNGs
# pages that read the repository's test data by relative path
NEEDS_TEST_DATA = {"docs/models.md"}
# pages that train, export or build large models: seconds each on two CPU cores
SLOW = {"docs/conventions.md", "docs/encoders.md", "docs/models.md", "docs/training.md"}


@dataclass
class Block:
    page: str
    index: int
    line: int
    code: str
    skip: str | None


def _blocks(page: str) -> list[Block]:
    text = (ROOT / page).read_text(encoding="utf-8")
    blocks = []
    for index, match in enumerate(BLOCK.finditer(text)):
        skip = None
        directive = match.group("directive")
        if directive is not None:
            found = SKIP.fullmatch(directive)
            assert found, f"{page}: unknown docs-test directive {directive!r}"
            skip = found.group("reason")
        line = text.count("\n", 0, match.start("code")) + 1
        blocks.append(Block(page, index, line, match.group("code"), skip))
    return blocks


BLOCKS = {page: _blocks(page) for page in PAGES}


@dataclass
class PageState:
    cwd: Path
    namespace: dict = field(default_factory=dict)
    done: int = 0  # blocks run (or skipped) so far
    failed: str | None = None


_STATES: dict[str, PageState] = {}


def _run(block: Block, namespace: dict) -> None:
    # the file name and line make a traceback point into the page
    code = compile("\n" * (block.line - 1) + block.code, str(ROOT / block.page), "exec")
    exec(code, namespace)


def _state(page: str, tmp_path_factory: pytest.TempPathFactory) -> PageState:
    if page not in _STATES:
        cwd = tmp_path_factory.mktemp(page.replace("/", "-").replace(".", "-"))
        if page in NEEDS_TEST_DATA:
            shutil.copytree(ROOT / "tests" / "data", cwd / "tests" / "data")
        _STATES[page] = PageState(cwd, {"__name__": "__main__"})
        old = Path.cwd()
        os.chdir(cwd)
        try:
            for other, index in SETUP.get(page, []):
                _run(BLOCKS[other][index], {"__name__": "__main__"})
        finally:
            os.chdir(old)
    return _STATES[page]


def _params():
    for page, blocks in BLOCKS.items():
        marks = [pytest.mark.slow] if page in SLOW else []
        for block in blocks:
            block_marks = marks
            if block.skip:
                block_marks = [
                    *marks,
                    pytest.mark.skip(reason=f"{page}:{block.index}: {block.skip}"),
                ]
            yield pytest.param(block, id=f"{page}:{block.index}", marks=block_marks)


def test_the_collector_finds_the_blocks():
    assert len(PAGES) >= 10 and "docs/metrics.md" in PAGES
    assert sum(len(blocks) for blocks in BLOCKS.values()) >= 80
    sample = (
        "<!-- docs-test: skip (needs a GPU) -->\n```python\nx = 1\n```\n```python\ny = 2\n```\n"
    )
    found = [(m.group("directive"), m.group("code")) for m in BLOCK.finditer(sample)]
    assert found == [("skip (needs a GPU)", "x = 1\n"), (None, "y = 2\n")]


@pytest.mark.parametrize("block", list(_params()))
def test_docs_block_runs(block: Block, tmp_path_factory, monkeypatch):
    state = _state(block.page, tmp_path_factory)
    monkeypatch.chdir(state.cwd)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setattr(tempfile, "tempdir", str(state.cwd))  # tempfile.mkdtemp() too
    # a block run on its own (-k) first runs the page's earlier blocks
    for earlier in BLOCKS[block.page][state.done : block.index]:
        if state.failed is None and not earlier.skip:
            try:
                _run(earlier, state.namespace)
            except Exception as error:
                state.failed = f"{earlier.page}:{earlier.index} raised {error!r}"
        state.done = earlier.index + 1
    if state.failed is not None:
        pytest.fail(f"an earlier block of this page failed ({state.failed})")
    try:
        _run(block, state.namespace)
    except BaseException as error:
        state.failed = f"{block.page}:{block.index} raised {error!r}"
        raise
    finally:
        state.done = block.index + 1
