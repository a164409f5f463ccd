"""Every ``python`` code block of README.md and docs/*.md: run, or parsed and import-checked for a stated reason;
every ``>>>`` example of a public docstring: run.

Each block is listed below by its file and first line. A block listed as runnable is executed (wrapped
in an ``async def`` when it awaits at top level, after a prelude that supplies the names the prose
leaves to the reader, such as ``tasks``); a block that needs a server (SERVER) is run by its own test here
against a real one started on 127.0.0.1 (a redis-server, a Dask ``LocalCluster``); one not run still parses
and imports every ``shannon_otel`` name it uses. A block that is in no list fails the test, so a new example
is either run or given a reason.
"""

from __future__ import annotations

import ast
import importlib
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from _redis_server import running_server

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
    ("docs/stack.md", "import os"):
        "binds the fixed port 9464 and sets global providers (tests/test_docs_truth.py runs it in a "
        "subprocess on a free port)",
}

# (file, first line) -> the test of this module that runs it against a real server
SERVER = {
    ("docs/dask.md", "from distributed import Client"): "test_the_dask_example_runs_on_a_local_cluster",
    ("docs/shared-state.md", "from shannon_otel import CircuitBreaker, Retry, Wave, task"):
        "test_the_shared_state_example_runs_against_a_real_redis_server",
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
    listed = RUN.keys() | SKIP.keys() | SERVER.keys()
    assert keys - listed == set(), "a new example: list it in RUN (with a prelude), SERVER (with its test) or SKIP"
    assert listed - keys == set(), "an example listed here is no longer in the docs"
    assert all(callable(globals().get(test)) for test in SERVER.values()), "SERVER names a test of this module"


def _top_level_await(code: str) -> bool:
    try:
        compile(code, "<example>", "exec")  # the compiler, not the parser, refuses an await outside a function
    except SyntaxError as exc:
        return "outside" in str(exc.msg) and "function" in str(exc.msg)
    return False


@pytest.mark.parametrize(("file", "first", "code"), blocks(), ids=lambda v: v if "\n" not in v else "")
def test_the_example_runs_or_compiles(file: str, first: str, code: str) -> None:
    if (file, first) in SERVER:
        return  # run by its own test, named in SERVER
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


def _block(file: str, first: str) -> str:
    return next(code for f, line, code in blocks() if (f, line) == (file, first))


def _after(code: str, start: str, added: str) -> str:
    """``code`` with the line ``added`` after the one line starting (indented) with ``start``, at its indent."""
    lines = code.splitlines()
    [index] = [i for i, line in enumerate(lines) if line.lstrip().startswith(start)]
    indent = lines[index][:len(lines[index]) - len(lines[index].lstrip())]
    return "\n".join([*lines[:index + 1], indent + added, *lines[index + 1:]]) + "\n"


def test_the_shared_state_example_runs_against_a_real_redis_server(tmp_path: Path) -> None:
    """docs/shared-state.md as written, its URL pointed at a real redis-server on a free 127.0.0.1 port and
    ``fetches`` (the user's) given: a shared breaker as the wave's policy, a shared rate limit, a shared pool."""
    code = _block("docs/shared-state.md", "from shannon_otel import CircuitBreaker, Retry, Wave, task")
    code = _after(code, "result = await wave.run(", "print(result.values(), result.report.counts)")
    prelude = textwrap.dedent("""
        import asyncio

        async def fetch(i: int) -> int:
            await asyncio.sleep(0)
            return i

        fetches = [lambda i=i: fetch(i) for i in range(12)]
    """)
    with running_server(tmp_path) as srv:
        assert "redis://127.0.0.1:6379/0" in code
        script = tmp_path / "shared.py"
        script.write_text(prelude + code.replace("redis://127.0.0.1:6379/0", srv.url) + "\nasyncio.run(main())\n",
                          encoding="utf-8")
        done = subprocess.run([sys.executable, "-W", "error", str(script)], cwd=tmp_path, capture_output=True,
                              text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        f"{list(range(12))} {{'success': 12, 'failure': 0, 'timeout': 0, 'cancellation': 0}}")


def test_the_dask_example_runs_on_a_local_cluster(tmp_path: Path) -> None:
    """docs/dask.md as written (``configure()``, the worker plugin, ``backend.map`` and the commented
    ``backend.remote`` form), its scheduler address pointed at a two-process ``LocalCluster`` on 127.0.0.1
    and ``myapp.crawl.fetch`` a module of the user's, importable on the workers."""
    code = _block("docs/dask.md", "from distributed import Client")
    code = _after(code, "result = await wave.run(", "print(result.values(), result.report.counts)")
    code = code.replace("# or: await wave.map(backend.remote(fetch), urls)",
                        "print((await wave.map(backend.remote(fetch), urls)).values())")
    assert '"tcp://scheduler:8786"' in code
    code = code.replace('"tcp://scheduler:8786"', "SCHEDULER")
    (tmp_path / "myapp").mkdir()
    (tmp_path / "myapp" / "__init__.py").write_text("", encoding="utf-8")
    (tmp_path / "myapp" / "crawl.py").write_text("def fetch(url: str) -> int:\n    return len(url)\n",
                                                 encoding="utf-8")
    script = tmp_path / "crawl_app.py"
    script.write_text(code + textwrap.dedent("""
        import asyncio
        from _dask_cluster import local_cluster

        if __name__ == "__main__":
            with local_cluster(2) as cluster:
                SCHEDULER = cluster.scheduler_address
                asyncio.run(main(["http://a", "http://bb", "http://ccc"]))
    """), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT), str(ROOT / "tests")]),
               OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none")  # configure() in client and workers
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, env=env,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "[8, 9, 10] {'success': 3, 'failure': 0, 'timeout': 0, 'cancellation': 0}", "[8, 9, 10]"]


# Inline `Name(...)` calls of public names in the prose (and the docstrings) that they state are refused, with what
# the error names.
REFUSED_INLINE = {
    'CircuitBreaker("api", failure_threshold=None, failure_rate=0.5, window=5)': "min_calls",
    "Timeout(10**400)": "seconds",
    "Retry()(Timeout(1))": "Pipeline",  # Policy.__call__: "does not stack them: Pipeline does"
}


def _runnable_call(code: str, public: set[str]) -> bool:
    """Whether ``code`` is an expression calling a public name of ``shannon_otel`` with arguments the reader can
    run as written: no placeholder (``...``, a name the prose leaves to the reader), no ``await``, and not
    ``configure()`` (it builds exporters and threads; tests/test_configure*.py run it)."""
    try:
        tree = ast.parse(code.strip(), mode="eval")
    except SyntaxError:
        return False
    nodes = list(ast.walk(tree))
    calls = [n for n in nodes if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    return not (not any(c.func.id in public and (c.args or c.keywords) for c in calls)  # type: ignore[attr-defined]
                or any(isinstance(n, (ast.Await, ast.Starred)) for n in nodes)
                or any(isinstance(n, ast.Constant) and n.value is Ellipsis for n in nodes)
                or any(isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.id not in public
                       and n.id not in ("logging", "Exception", "None", "True", "False")
                       and n.id not in {a.arg for lam in nodes if isinstance(lam, ast.Lambda)
                                        for a in lam.args.args} for n in nodes)
                or any(c.func.id == "configure" for c in calls))  # type: ignore[attr-defined]


def _public_namespace() -> dict[str, Any]:
    """Every public name of PUBLIC_MODULES (``alert_rules``, ``RedisState``, ``set_testing`` beside the package's)."""
    namespace: dict[str, Any] = {}
    for module in PUBLIC_MODULES:
        loaded = importlib.import_module(module)
        namespace.update({name: getattr(loaded, name) for name in loaded.__all__})
    return namespace


def _inline_calls() -> list[tuple[str, str]]:
    """(file, code) of every inline code span of README.md and docs/*.md (fenced blocks left out), and
    (public name, code) of every ````code```` span of the public docstrings (``help()``), that is a call
    :func:`_runnable_call` accepts."""
    public = set(_public_namespace())
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = re.sub(r"^( *)```.*?^\1```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
        found += [(path.relative_to(ROOT).as_posix(), code.strip())
                  for code in dict.fromkeys(re.findall(r"`([^`\n]+)`", text)) if _runnable_call(code, public)]
    for where, doc in _public_docstrings():
        found += [(where, code.strip()) for code in dict.fromkeys(re.findall(r"``([^`]+)``", " ".join(doc.split())))
                  if _runnable_call(code, public)]
    return found


def test_every_inline_call_the_prose_shows_builds_as_written_or_is_refused_as_it_says() -> None:
    """The fenced examples run above; the calls written inline in the prose (`ResourcePool("db", 2)`,
    `LoggingHook(levels={...})`, `Degrade(last_good=True, key=lambda args, kwargs: args[0])`, ...) were checked
    for their keyword names only: `Saga(compensation_timeout_s=30.0)`, in docs/architecture.md and
    docs/reliability.md, is a TypeError as written (`name` is required). The docstrings' ````calls```` that
    ``help()`` shows are checked the same way (``Retry()(Timeout(1))``, which Policy.__call__ says is refused)."""
    import logging

    calls = _inline_calls()
    namespace = _public_namespace() | {"logging": logging}
    wrong = []
    for file, code in calls:
        try:
            eval(compile(code, f"{file}: {code}", "eval"), dict(namespace))
        except Exception as exc:  # reported below with the call
            if code not in REFUSED_INLINE or REFUSED_INLINE[code] not in str(exc):
                wrong.append(f"{file}: {code} -> {type(exc).__name__}: {exc}")
            continue
        if code in REFUSED_INLINE:
            wrong.append(f"{file}: {code} is said to be refused, and builds")
    assert wrong == []
    assert set(REFUSED_INLINE) <= {code for _, code in calls}, "a refused call listed here is no longer in the docs"
    assert len(calls) >= 15


# The public modules whose docstrings (the module's and those of its public names and their methods) a user reads
# with help(): every ``>>>`` example in them is run here, against a real server where it needs one.
PUBLIC_MODULES = ("shannon_otel", "shannon_otel.testing", "shannon_otel.dask", "shannon_otel.redis",
                  "shannon_otel.anomaly", "shannon_otel.assets")


def _public_docstrings() -> list[tuple[str, str]]:
    """(where, docstring) of every public module of PUBLIC_MODULES, its public names and their methods."""
    import inspect

    found: list[tuple[str, str]] = []
    seen: set[int] = set()
    for name in PUBLIC_MODULES:
        module = importlib.import_module(name)
        found.append((name, module.__doc__ or ""))
        for attr in module.__all__:
            obj = getattr(module, attr)
            if id(obj) in seen or not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            seen.add(id(obj))
            found.append((f"{name}.{attr}", obj.__doc__ or ""))
            if inspect.isclass(obj):
                for member, value in vars(obj).items():
                    function = value.fget if isinstance(value, property) else getattr(value, "__func__", value)
                    if (member in ("__init__", "__call__") or not member.startswith("_")) and callable(function):
                        found.append((f"{name}.{attr}.{member}", getattr(function, "__doc__", None) or ""))
    return found


def docstring_examples() -> list[tuple[str, str, str]]:
    """(where, first line, code) of every ``>>>`` example (with its ``...`` lines) of a public docstring."""
    import inspect

    found = []
    for where, doc in _public_docstrings():
        code: list[str] = []
        for line in [*inspect.cleandoc(doc).splitlines(), ""]:
            if line.startswith((">>> ", "... ")) or line in (">>>", "..."):
                code.append(line[4:])
            elif code:
                found.append((where, code[0], "\n".join(code) + "\n"))
                code = []
    return list({(w, first): (w, first, c) for w, first, c in found}.values())  # a class and its module alike


# (where, first line) -> the test of this module that runs it as written
DOCSTRING_EXAMPLES = {
    ("shannon_otel.redis", 'async with RedisState("redis://127.0.0.1:6379/0") as shared:'):
        "test_the_redis_docstring_example_runs_against_a_real_redis_server",
    ("shannon_otel.dask", "from shannon_otel.dask import DaskBackend, WorkerTelemetry"):
        "test_the_dask_docstring_examples_run_on_a_local_cluster",
    ("shannon_otel.dask.DaskBackend", "backend = DaskBackend(client)"):
        "test_the_dask_docstring_examples_run_on_a_local_cluster",
}


def test_every_docstring_example_is_run() -> None:
    """`help(shannon_otel.redis)` and `help(DaskBackend)` show ``>>>`` examples; no test ran them (a renamed
    parameter, e.g. ``SharedRateLimit(rate=)``, would have left them lying). Each is now run by a test named here."""
    keys = {(where, first) for where, first, _ in docstring_examples()}
    assert keys == DOCSTRING_EXAMPLES.keys(), "a new docstring example: run it in a test and list it here"
    assert all(callable(globals().get(test)) for test in DOCSTRING_EXAMPLES.values())


def _docstring_example(where: str) -> str:
    return next(code for w, _, code in docstring_examples() if w == where)


def test_the_redis_docstring_example_runs_against_a_real_redis_server(tmp_path: Path) -> None:
    """``help(shannon_otel.redis)``'s example as written, its URL pointed at a real redis-server on 127.0.0.1
    and the imports it leaves to the reader added; then the wave it builds runs under the shared breaker
    and rate limit."""
    code = _docstring_example("shannon_otel.redis")
    code = _after(code, "wave = Wave(", "print((await wave.run([work] * 3)).report.counts)")
    prelude = textwrap.dedent("""
        import asyncio
        from shannon_otel import CircuitBreaker, Wave
        from shannon_otel.redis import RedisState, SharedRateLimit

        async def work() -> int:
            return 1

        async def main() -> None:
    """)
    with running_server(tmp_path) as srv:
        assert "redis://127.0.0.1:6379/0" in code
        script = tmp_path / "redis_doc.py"
        script.write_text(prelude + textwrap.indent(code.replace("redis://127.0.0.1:6379/0", srv.url), "    ")
                          + "\nasyncio.run(main())\n", encoding="utf-8")
        done = subprocess.run([sys.executable, "-W", "error", str(script)], cwd=tmp_path, capture_output=True,
                              text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "{'success': 3, 'failure': 0, 'timeout': 0, 'cancellation': 0}"


def test_the_dask_docstring_examples_run_on_a_local_cluster(tmp_path: Path) -> None:
    """``help(shannon_otel.dask)``'s and ``help(DaskBackend)``'s examples as written, on a one-worker
    ``LocalCluster`` on 127.0.0.1, with ``fetch`` a module-level function of the user's and ``urls`` given."""
    module_example = _docstring_example("shannon_otel.dask")
    class_example = _docstring_example("shannon_otel.dask.DaskBackend")
    module_example = _after(module_example, "result = await", "print(result.values())")
    body = module_example + "async with Client(address, asynchronous=True) as client:\n" + textwrap.indent(
        class_example + "print(result.values())\n", "    ")
    (tmp_path / "myapp").mkdir()
    (tmp_path / "myapp" / "__init__.py").write_text("", encoding="utf-8")
    (tmp_path / "myapp" / "crawl.py").write_text("def fetch(url: str) -> int:\n    return len(url)\n",
                                                 encoding="utf-8")
    script = tmp_path / "dask_doc.py"
    script.write_text(textwrap.dedent("""
        import asyncio
        from distributed import Client
        from shannon_otel import Retry, Wave
        from myapp.crawl import fetch
        from _dask_cluster import local_cluster

        urls = ["http://a", "http://bb"]

        async def main(address: str) -> None:
    """) + textwrap.indent(body, "    ") + textwrap.dedent("""
        if __name__ == "__main__":
            with local_cluster(1) as cluster:
                asyncio.run(main(cluster.scheduler_address))
    """), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT), str(ROOT / "tests")]),
               OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none")  # WorkerTelemetry's configure()
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, env=env,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[8, 9]", "[8, 9]"]


def test_every_name_a_public_docstring_points_to_is_one_the_user_can_reach() -> None:
    """``help(concrete_query)`` sent the reader to :data:`GRAFANA_DEFAULTS`, ``help(DetectorConfig)`` to
    :class:`Severity` and ``help(Policy.call)`` to :class:`DecoratedCall`: none of them is in a public module. Each
    ``:class:``/``:func:``/``:data:``/``:exc:``/``:mod:`` target of a public docstring is now a public name (an
    attribute of one), a dotted path that imports, or a member of the class documented."""
    namespace = _public_namespace()

    def reachable(where: str, target: str) -> bool:
        parts = target.lstrip("~.").split(".")
        for base in (parts[0], *(".".join(where.split(".")[:i]) for i in range(len(where.split(".")), 0, -1))):
            try:
                obj: Any = namespace[base] if base in namespace else importlib.import_module(base.split(".")[0])
                for part in [*base.split(".")[1:]] if base not in namespace else []:
                    obj = getattr(obj, part)
                for part in parts[1:] if base == parts[0] else parts:
                    obj = getattr(obj, part)
                return True
            except (AttributeError, ImportError, KeyError):
                continue
        return False

    found = [(where, target) for where, doc in _public_docstrings()
             for target in re.findall(r":(?:class|func|data|exc|mod):`([^`]+)`", doc)]
    assert [f"{where}: {target}" for where, target in found if not reachable(where, target)] == []
    assert len(found) >= 40


def test_no_public_docstring_sends_the_reader_to_a_private_module() -> None:
    """``help(configure)`` said "see ``_metrics_bridge``" (the user's name for it is ``bridged``),
    ``help(Transaction)`` "``shannon_otel._isolation``", ``help(DetectorConfig)`` and ``help(AnomalyDetector.update)``
    "``_scoring.RANGE_SPAN``"...: modules the user is told are not API (docs/api.md) and ``help()`` does not show.
    ``help(Policy)`` told subclasses to "implement :meth:`run`", whose parameters are private types; a class of the
    user's overrides ``call`` (docs/api.md). No public docstring names a private module now."""
    import pkgutil

    import shannon_otel

    private = {info.name.rsplit(".", 1)[-1] for info in pkgutil.walk_packages(shannon_otel.__path__, "shannon_otel.")
               if info.name.rsplit(".", 1)[-1].startswith("_")}
    assert {"_metrics_bridge", "_isolation", "_scoring"} <= private
    named = [(where, found) for where, doc in _public_docstrings()
             for found in re.findall(r"(?<![\w.])(?:shannon_otel\.)?(_\w+)(?=[.`])", doc) if found in private]
    assert named == []
    assert "implement :meth:`run`" not in (shannon_otel.Policy.__doc__ or "")
