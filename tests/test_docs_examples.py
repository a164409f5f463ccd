"""Every ``python`` code block of README.md and docs/*.md: run, or parsed and import-checked for a stated reason.

Each block is listed below by its file and first line. A block listed as runnable is executed (wrapped
in an ``async def`` when it awaits at top level, after a prelude that supplies the names the prose
leaves to the reader, such as ``tasks``); one not run still parses and imports every
``shannon_otel`` name it uses. A block that is in no list fails the test, so a new example is either
run or given a reason.
"""

from __future__ import annotations

import ast
import importlib
import re
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

_PRELUDE_TASKS = """
import asyncio
from shannon_otel import RunRecorder, Wave

async def _work() -> int:
    await asyncio.sleep(0)
    return 1
"""

# (file, first line) -> prelude of the names the prose assumes
RUN = {
    ("docs/cli.md", 'result = await Wave("crawl", max_concurrency=4).run(tasks)'):
        _PRELUDE_TASKS + "tasks = [_work] * 8\n",
    ("docs/cli.md", "recorder = RunRecorder()"):
        _PRELUDE_TASKS + "tasks = {name: [_work] * 8 for name in ('plan', 'research', 'write')}\n",
}

# (file, first line) -> why it is not run here
SKIP = {
    ("README.md", "import asyncio"):
        "the quick start runs as a script, as written, in tests/test_readme.py",
    ("docs/dask.md", "from distributed import Client"):
        "needs a Dask scheduler at tcp://scheduler:8786 and the user's myapp.crawl (tests/test_dask.py runs "
        "DaskBackend on a LocalCluster)",
    ("docs/shared-state.md", "from shannon_otel import CircuitBreaker, Retry, Wave, task"):
        "needs a Redis server and the user's fetches (tests/test_redis_shared.py runs a real redis-server)",
    ("docs/stack.md", "import os"):
        "binds the fixed port 9464 and sets global providers (tests/test_docs_truth.py runs it in a "
        "subprocess on a free port)",
}


def blocks() -> list[tuple[str, str, str]]:
    """(file, first line, code) of every fenced ``python`` block."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"^( *)```python\n(.*?)^\1```", text, re.S | re.M):
            code = textwrap.dedent(match.group(2))
            found.append((path.relative_to(ROOT).as_posix(), code.splitlines()[0].strip(), code))
    return found


def test_every_python_block_is_run_or_skipped_for_a_reason() -> None:
    keys = {(f, first) for f, first, _ in blocks()}
    assert keys - RUN.keys() - SKIP.keys() == set(), "a new example: list it in RUN (with a prelude) or SKIP"
    assert (RUN.keys() | SKIP.keys()) - keys == set(), "an example listed here is no longer in the docs"


def _top_level_await(code: str) -> bool:
    try:
        compile(code, "<example>", "exec")  # the compiler, not the parser, refuses an await outside a function
    except SyntaxError as exc:
        return "outside" in str(exc.msg) and "function" in str(exc.msg)
    return False


@pytest.mark.parametrize(("file", "first", "code"), blocks(), ids=lambda v: v if "\n" not in v else "")
def test_the_example_runs_or_compiles(file: str, first: str, code: str) -> None:
    if (file, first) in SKIP:
        tree = ast.parse(code)
        for node in ast.walk(tree):  # the shannon_otel names it imports exist
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("shannon_otel"):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name), f"{file}: {node.module} has no {alias.name}"
        assert SKIP[(file, first)], "a block not run says why"
        return  # checked as far as it can be here: it compiles and its imports exist; not run, for SKIP's reason
    prelude = RUN[(file, first)]
    if _top_level_await(code):
        code = "async def _example() -> None:\n" + textwrap.indent(code, "    ") + "\nasyncio.run(_example())\n"
    exec(compile(prelude + code, f"{file}: {first}", "exec"), {"__name__": "__example__"})
