"""What the README, docs/ and the deployment assets say is true of the code: snippets that run, defaults,
names, the instrumentation scope, bucket boundaries and import steps as the docs state them."""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import shannon_otel.testing

ROOT = Path(__file__).resolve().parent.parent
_REPOSITORY_FILES = "https://github.com/shannon-otel/shannon-otel/blob/main/"  # README.md links files by URL


def _section_block(path: str, heading: str) -> str:
    """The first ``python`` block after ``heading`` in ``path``."""
    text = (ROOT / path).read_text(encoding="utf-8")
    section = text[text.index(heading):]
    start = section.index("```python\n") + len("```python\n")
    return section[start:section.index("```", start)]


def test_the_stack_snippet_without_a_collector_pushes_no_metrics_over_otlp(tmp_path: Path) -> None:
    """docs/stack.md "Without a collector": the snippet's comments say metrics are scraped from the reader
    and only traces go over OTLP, but configure() adds metric_readers to its OTLP metric exporter: pasted
    as is, every metric export failed against Jaeger (or nothing) and was counted as dropped."""
    code = _section_block("docs/stack.md", "## Without a collector").replace("port=9464", "port=0")
    script = tmp_path / "snippet.py"
    script.write_text(code + textwrap.dedent("""
        import asyncio
        from shannon_otel import Wave

        async def work() -> int:
            return 1

        asyncio.run(Wave("w").run([work] * 3))
        print("shannon_task_outcomes_total" in reader.scrape())
        server.close()
    """), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(PYTHONPATH=str(ROOT), OTEL_TRACES_EXPORTER="none", OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9")
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"  # the reader serves the metrics
    assert "metric" not in done.stderr, done.stderr  # and no OTLP metric export failed (or was attempted)


# --------------------------------------------------------------------------- the public API, documented
def _api_rows() -> dict[str, str]:
    """docs/api.md: each name of a table row's first cell -> the row's description."""
    rows = {}
    for line in (ROOT / "docs" / "api.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 2:
            for name in re.findall(r"`(\w+)`", cells[0]):
                rows[name] = cells[1]
    return rows


def test_every_public_name_is_in_the_api_page_and_the_readme_links_it() -> None:
    """Thirty of the names `from shannon_otel import` offers (WaveResult, TaskSpec, Jitter, every event type,
    Outcome, ...) were documented nowhere in README.md or docs/; a user met them only in tracebacks."""
    rows = _api_rows()
    missing = [n for n in [*shannon_otel.__all__, *shannon_otel.testing.__all__] if n not in rows]
    assert missing == []
    assert f"]({_REPOSITORY_FILES}docs/api.md)" in (ROOT / "README.md").read_text(encoding="utf-8")


# What a user reads off these (results, reports, handles): their rows list it. Policies and hooks are not here:
# their rows give the constructor, and their methods are the protocol's.
_ROWS_LIST_THE_ATTRIBUTES = ("Telemetry", "MetricsServer", "WaveResult", "WaveReport", "WaveStream", "TaskResult",
                             "Summary", "Progress", "ResourcePool", "Recommendation", "Served", "Anomaly",
                             "SagaResult", "SagaError", "RunReport")


def test_every_public_attribute_of_a_result_or_report_is_in_its_api_row() -> None:
    """docs/api.md omitted `WaveReport.total` / `.failed`, `TaskResult.batch`, `ResourcePool.in_use` and every
    field of `Served` (value, degraded, mode, reason, age_s, error), all public in help()."""
    rows = _api_rows()
    missing = []
    for name in _ROWS_LIST_THE_ATTRIBUTES:
        cls = getattr(shannon_otel, name)
        written = {word for span in re.findall(r"`([^`]*)`", rows[name]) for word in re.findall(r"\w+", span)}
        inherited = (set(dir(tuple)) | set(dir(BaseException))) - {"index"}  # TaskResult's index shadows tuple's
        # classmethods building one (Summary.of) are the executor's
        attributes = {a for a in dir(cls) if not a.startswith("_") and a not in inherited
                      and not isinstance(inspect.getattr_static(cls, a), classmethod)}
        missing += [f"{name}.{a}" for a in sorted(attributes - written)]
    assert missing == []


def test_every_default_the_api_page_states_is_the_codes() -> None:
    """A parameter named with its default in docs/api.md exists with that default (a renamed parameter or
    a changed default fails here, not in a user's code). A method's signature in its class's row is read too
    (`Telemetry`'s `force_flush(timeout_s=10.0)`; its `shutdown()` hid the `timeout_s` it takes)."""
    checked = 0
    for name, row in _api_rows().items():
        obj = getattr(shannon_otel, name, None)
        if obj is None or not callable(obj):
            continue
        for fragment in re.findall(r"`([^`]*)`", row):
            called = re.match(r"(\w+)\(", fragment)
            if called is None or called.group(1) not in (name, *(m for m in dir(obj) if not m.startswith("_"))):
                continue
            target = obj if called.group(1) == name else getattr(obj, called.group(1))
            if not callable(target):
                continue
            signature = inspect.signature(target)
            for param, value in re.findall(r"(\w+)=(\([^()]*\)|[^,)]*)", fragment):  # a tuple too
                assert param in signature.parameters, f"{fragment}: no parameter {param}"
                if value.strip():
                    default = signature.parameters[param].default
                    assert default == eval(value, vars(shannon_otel)), f"{fragment}: {param}= is {default!r}"
                    checked += 1
    assert checked >= 20


def test_every_default_a_signature_on_any_page_or_in_a_docstring_states_is_the_codes() -> None:
    """The test above reads docs/api.md's rows; the other pages and the docstrings write signatures too
    (`WorkerTelemetry(service_name=None, *, ..., export_timeout_s=5.0, ...)` in docs/dask.md,
    `DaskBackend(client, gather_window_s=0.05)`, ``TailSampler(processor, *, healthy_ratio=0.1, ...)``). A span is
    read as a signature when it has a bare ``*`` or ``...`` argument or its positional arguments are the
    parameters' own names (a call with the user's values, `Retry(attempts=5)`, is not one); each ``name=value``
    of it whose value is written out (not ``...``) is that parameter's default."""
    import importlib

    public: dict[str, Any] = {}
    for module in ("shannon_otel", "shannon_otel.testing", "shannon_otel.dask", "shannon_otel.redis",
                   "shannon_otel.anomaly", "shannon_otel.assets"):
        loaded = importlib.import_module(module)
        public.update({name: getattr(loaded, name) for name in loaded.__all__ if callable(getattr(loaded, name))})
    sources = [(path.name, path.read_text(encoding="utf-8")) for path in [ROOT / "README.md", *sorted(
        (ROOT / "docs").glob("*.md"))] if path.name != "benchmarks.md"]
    sources += [(name, obj.__doc__ or "") for name, obj in public.items()]
    wrong, checked = [], 0
    for where, text in sources:
        for span in re.findall(r"`+([^`]+)`+", " ".join(text.split())):
            call = re.fullmatch(r"(\w+)\((.*)\)", span.strip())
            if not call or call.group(1) not in public:
                continue
            parameters = inspect.signature(public[call.group(1)]).parameters
            arguments = [a.strip() for a in re.split(r",\s*(?![^()\[\]{}]*[)\]}])", call.group(2)) if a.strip()]
            positional = [a for a in arguments if not re.fullmatch(r"\w+=.+", a) and a not in ("*", "...")]
            if not {"*", "..."} & set(arguments) and not (positional and all(a in parameters for a in positional)):
                continue  # a call with the user's values, not a signature
            for param, value in (a.split("=", 1) for a in arguments if re.fullmatch(r"\w+=.+", a)):
                if param not in parameters or "..." in value:
                    continue  # a CircuitBreaker's settings are BreakerConfig's; test_every_keyword... checks names
                checked += 1
                default = parameters[param].default
                if default != eval(value, vars(shannon_otel)):
                    wrong.append(f"{where}: {span}: {param} defaults to {default!r}")
    assert wrong == []
    assert checked >= 50


def test_the_policies_the_readme_says_take_on_are_those_that_do() -> None:
    """The README said "`on=` chooses exceptions in each" policy: `Timeout(1, on=...)` and `Hedge(0.1, on=...)` are
    TypeErrors, and `Degrade`, which does take it, acts by default on an open breaker or a timeout only (its api.md
    row said "on failure": a `Degrade(default=0)` call failing with ValueError raised it)."""
    async def fallback(error: Exception) -> None:
        return None

    def takes_on(build: Any) -> bool:
        try:
            build(on=ValueError)
        except TypeError:
            return False
        return True

    builds = {"Retry": lambda **kw: shannon_otel.Retry(**kw), "Timeout": lambda **kw: shannon_otel.Timeout(1, **kw),
              "CircuitBreaker": lambda **kw: shannon_otel.CircuitBreaker("b", **kw),
              "Fallback": lambda **kw: shannon_otel.Fallback(fallback, **kw),
              "Hedge": lambda **kw: shannon_otel.Hedge(0.1, **kw),
              "Degrade": lambda **kw: shannon_otel.Degrade(default=0, **kw),
              "Saga": lambda **kw: shannon_otel.Saga("s", **kw)}
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    sentence = re.search(r"`on=` chooses ([^;]*);", readme)
    assert sentence is not None
    named = set(re.findall(r"`(\w+)`", sentence.group(1))) & builds.keys()
    assert named == {name for name, build in builds.items() if takes_on(build)}
    assert "on=(CircuitOpenError, TimeoutError)" in _api_rows()["Degrade"]  # its default, checked by the test above


def _signature_spans() -> list[tuple[str, str, str]]:
    """(file, public name, argument list) of every signature written in docs/api.md's table and in README.md:
    `task(work, name=None, pool=None)`, `Wave(name, max_concurrency=, ...)` (an empty `x=` marks a README span
    as a signature, not a call with the user's values such as `task(fetch, pool=db)`)."""
    public = {*shannon_otel.__all__, *shannon_otel.testing.__all__}
    found: list[tuple[str, str, str]] = []
    for name, row in _api_rows().items():
        found.extend(("docs/api.md", name, fragment[len(name) + 1:-1]) for fragment in re.findall(r"`([^`]*)`", row)
                     if fragment.startswith(f"{name}(") and fragment.endswith(")"))
    readme = re.sub(r"^ *```.*?^ *```", "", (ROOT / "README.md").read_text(encoding="utf-8"), flags=re.S | re.M)
    for span in re.findall(r"`([^`]+)`", " ".join(readme.split())):  # fenced blocks out: they pair no backticks
        call = re.fullmatch(r"(\w+)\((.*)\)", span)
        if call and call.group(1) in public and re.search(r"\w=(,|$)", call.group(2)):
            found.append(("README.md", call.group(1), call.group(2)))
    return found


def test_every_parameter_a_documented_signature_names_exists() -> None:
    """docs/api.md and the README wrote `task(fn, name=, pool=)`: the parameter is `work`, and `task(fn=...)`
    raised TypeError. The defaults test above reads only `name=value` pairs; this reads every name."""
    wrong = []
    spans = _signature_spans()
    for file, name, arguments in spans:
        obj = getattr(shannon_otel, name, None) or getattr(shannon_otel.testing, name)
        parameters = inspect.signature(obj).parameters
        for argument in re.split(r",\s*(?![^()\[\]{}]*[)\]}])", arguments):
            param = re.match(r"\s*(\w+)\s*(?:=|$)", argument)
            if param and param.group(1) not in parameters:
                wrong.append(f"{file}: {name}({param.group(1)}) is not a parameter of {name}{inspect.signature(obj)}")
    assert wrong == []
    assert {"README.md", "docs/api.md"} <= {file for file, _, _ in spans} and len(spans) >= 15


def test_every_keyword_only_parameter_api_md_writes_follows_a_star() -> None:
    """docs/api.md wrote `TailSampler(processor, healthy_ratio=0.1, ...)` and `task(work, name=None, pool=None)`
    without the bare `*`: a reader taking the reference at its word wrote `TailSampler(p, 0.5)` and got a
    TypeError. A keyword-only parameter in a reference signature comes after a `*` (or `*args`)."""
    wrong = []
    for file, name, arguments in _signature_spans():
        if file != "docs/api.md":
            continue
        obj = getattr(shannon_otel, name, None) or getattr(shannon_otel.testing, name)
        parameters = inspect.signature(obj).parameters
        starred = False
        for argument in re.split(r",\s*(?![^()\[\]{}]*[)\]}])", arguments):
            starred = starred or argument.strip().startswith("*")
            param = re.match(r"\s*(\w+)\s*(?:=|$)", argument)
            if (param and not starred and param.group(1) in parameters
                    and parameters[param.group(1)].kind is inspect.Parameter.KEYWORD_ONLY):
                wrong.append(f"{name}({arguments}): {param.group(1)} is keyword-only")
    assert wrong == []


def test_every_public_class_has_its_own_docstring() -> None:
    """`help(shannon_otel.BreakerState)` showed its base's "A StrEnum that prints as its value ('success',
    not <Outcome.SUCCESS...>)"; `SagaObserver` had no docstring at all."""
    bare = [name for name in shannon_otel.__all__ if inspect.isclass(obj := getattr(shannon_otel, name))
            and not (vars(obj).get("__doc__") or "").strip()]
    assert bare == []


def test_no_public_class_has_only_the_signature_dataclass_writes_for_a_docstring() -> None:
    """Thirteen event types (`CallStarted`, `RetryScheduled`, `SagaFinished`, ...) passed the test above with the
    docstring `@dataclass` makes up, their signature (`CallStarted(operation: 'str', policy: 'str')`): `help()`
    never said when a hook is handed one, nor what `attempt`, `max_attempts` or `mode` hold."""
    made_up = [name for name in shannon_otel.__all__ if inspect.isclass(obj := getattr(shannon_otel, name))
               and (vars(obj).get("__doc__") or "").startswith(f"{obj.__name__}(")]
    assert made_up == []


def test_every_public_method_and_property_of_a_public_class_has_a_docstring() -> None:
    """`help(shannon_otel.ResourcePool)` showed `acquire`, `release`, `name`, `limit`, `in_use` with nothing; so
    did `WaveResult.raise_for_errors`, `Saga.begin`, `Degrade.clear`, `BreakerRegistry.names` and every
    `CallObserver` / `SagaObserver` method a hook overrides (what `token` is, when each is called). A method
    inherits its base's docstring, as `help()` shows it."""
    bare = []
    for module in (shannon_otel, shannon_otel.testing):
        for name in module.__all__:
            cls = getattr(module, name)
            if not inspect.isclass(cls):
                continue
            for attr, value in vars(cls).items():
                if attr.startswith("_") or not (callable(value) or isinstance(value, (property, classmethod))):
                    continue
                if not inspect.getdoc(getattr(cls, attr)):
                    bare.append(f"{name}.{attr}")
    assert bare == []


def test_the_readmes_no_server_recipe_prints_the_quick_starts_spans(tmp_path: Path) -> None:
    """A first run of the quick start without a collector printed only export errors and a shutdown warning
    after 3 s, and the README said nothing of it; the recipe it now gives shows the spans, with no error."""
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    recipe = re.search(r"`((?:OTEL_\w+=\w+ )+)python3 app\.py`", readme)
    assert recipe is not None
    script = tmp_path / "app.py"
    script.write_text(_section_block("README.md", "## Quick start"), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(dict(pair.split("=") for pair in recipe.group(1).split()), PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert '"name": "wave ask-all"' in done.stdout and done.stdout.count('"name": "task ask-all"') == 3
    assert done.stderr == ""


def test_the_wave_spans_error_description_tells_timeouts_from_failures() -> None:
    """Jaeger showed a wave whose tasks were 2 failed and 1 timed out as "3 of 7 tasks failed", next to its
    own shannon.wave.tasks.failure=2 / .timeout=1 attributes."""
    import asyncio

    from shannon_otel import Wave
    from shannon_otel.testing import InMemoryTelemetry, run_virtual

    tel = InMemoryTelemetry()

    async def ok() -> None:
        return None

    async def bad() -> None:
        raise ValueError("boom")

    async def slow() -> None:
        await asyncio.sleep(10)

    async def main() -> None:
        for name, tasks in (("mixed", [ok, bad, bad, slow]), ("failed", [ok, bad]), ("slow", [ok, slow, slow])):
            await Wave[None](name, task_timeout=1, **tel.providers).run(tasks)

    run_virtual(main())
    described = {}
    for name in ("mixed", "failed", "slow"):
        span = tel.span(f"wave {name}")
        assert span.attributes is not None
        described[name] = span.status.description
    assert described == {"mixed": "2 of 4 tasks failed, 1 timed out", "failed": "1 of 2 tasks failed",
                         "slow": "2 of 3 tasks timed out"}


def test_the_scope_the_docs_name_is_the_one_every_span_and_metric_has() -> None:
    """docs/architecture.md put the task histograms in "the `shannon-otel` scope"; every instrument and span
    of the library is in `shannon_otel` (`otel_scope_name="shannon_otel"` on every Prometheus series)."""
    import asyncio

    from shannon_otel import Retry, Wave
    from shannon_otel._telemetry import SCOPE_NAME
    from shannon_otel.testing import InMemoryTelemetry, run_virtual

    tel = InMemoryTelemetry()

    async def ok() -> int:
        await asyncio.sleep(0)
        return 1

    async def main() -> None:
        await Wave[int]("w", policy=Retry(), **tel.providers).run([ok])

    run_virtual(main())
    assert {s.instrumentation_scope.name for s in tel.spans() if s.instrumentation_scope} == {SCOPE_NAME}
    data = tel.metric_reader.get_metrics_data()
    assert data is not None
    assert {sm.scope.name for rm in data.resource_metrics for sm in rm.scope_metrics} == {SCOPE_NAME}
    text = " ".join((ROOT / "docs" / "architecture.md").read_text(encoding="utf-8").split())
    named = set(re.findall(r"`([\w-]+)` (?:instrumentation )?scope\b", text))
    assert named == {SCOPE_NAME}, named


def test_the_readme_says_the_stack_scrapes_the_demo_only_if_it_does(tmp_path: Path) -> None:
    """README: after `scripts/stack start`, `demo --prometheus-port 9464  # or let Prometheus scrape the
    demo`; the stack's Prometheus scrapes the collector only, so a user saw no demo series at all."""
    env = {**os.environ, "SHANNON_STACK_DIR": str(tmp_path)}
    config = subprocess.run([str(ROOT / "scripts" / "stack"), "prometheus-config"], env=env, capture_output=True,
                            text=True, timeout=120, check=True).stdout
    config = "\n".join(line.split("#", 1)[0] for line in config.splitlines())  # its commented-out jobs scrape nothing
    lines = [line for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
             if line.startswith("shannon-otel demo") and "--prometheus-port" in line]
    assert lines
    for line in lines:
        port = re.search(r"--prometheus-port (\d+)", line)
        assert port is not None
        if re.search(r"#.*\bPrometheus scrape", line):  # a promise that the stack scrapes it
            assert f":{port.group(1)}" in config, line
        else:
            assert "The stack's Prometheus scrapes the collector only" in (ROOT / "README.md").read_text(
                encoding="utf-8")


def test_a_task_of_millions_of_tokens_lands_in_a_finite_bucket_as_the_genai_advice_has_it() -> None:
    """TOKEN_BUCKETS claimed the GenAI conventions' advice but stopped at 4194304 of its 14 boundaries: a
    task summing 5M tokens (an agent's many long-context calls) fell in +Inf, and every quantile above it
    read 4194304."""
    from shannon_otel import Wave, record_tokens
    from shannon_otel._telemetry import TOKEN_BUCKETS
    from shannon_otel.testing import InMemoryTelemetry, run_virtual

    assert tuple(float(4**k) for k in range(14)) == TOKEN_BUCKETS  # 1, 4, 16, ... 67108864

    async def agent() -> None:
        record_tokens(input=5_000_000, output=20_000_000)

    async def main(tel: InMemoryTelemetry) -> None:
        await Wave[None]("agents", **tel.providers).run([agent])

    for bridged in (True, False):
        tel = InMemoryTelemetry(bridged=bridged)
        run_virtual(main(tel))
        for token_type, bound in (("input", 16777216.0), ("output", 67108864.0)):
            point = tel.point("shannon.task.tokens", shannon_token_type=token_type)
            assert point.bucket_counts[-1] == 0, (bridged, token_type)  # nothing overflowed
            assert point.bucket_counts[list(point.explicit_bounds).index(bound)] == 1


def test_the_docs_metric_table_writes_bucket_boundaries_as_the_contract_has_them() -> None:
    """The generated table wrote 4194304 as "4.1943e+06" (`:g`), i.e. 4194300: another boundary."""
    from shannon_otel._telemetry import METRICS

    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    for spec in METRICS:
        if spec.buckets:
            row = next(line for line in text.splitlines() if line.startswith(f"| `{spec.name}` |"))
            written = re.search(r"Buckets: ([^|]*)\.", row)
            assert written is not None
            assert tuple(float(b) for b in written.group(1).split(", ")) == spec.buckets, spec.name


def test_the_import_steps_match_what_grafanas_import_of_the_models_asks() -> None:
    """docs/stack.md said to "choose that Prometheus datasource" when importing; the models declare no
    `__inputs`, so Grafana's import asks nothing: the datasource is each dashboard's *Prometheus* variable."""
    import json

    steps = " ".join((ROOT / "docs" / "stack.md").read_text(encoding="utf-8").split())
    for path in sorted((ROOT / "dashboards").glob("*.json")):
        model = json.loads(path.read_text(encoding="utf-8"))
        variable = model["templating"]["list"][0]
        assert (variable["type"], variable["query"], variable["label"]) == ("datasource", "prometheus", "Prometheus")
        if "__inputs" not in model:
            assert "choose that Prometheus datasource" not in steps
            assert "the import asks for nothing" in steps


def test_the_readmes_dependency_list_is_pyprojects() -> None:
    """The README's "Core:" named four packages; pyproject requires five (`requests`, added for the
    OTLP/HTTP exporter's session hook, was missing). Each extra it describes adds the package it names."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]

    def names(requirements: list[str]) -> set[str]:
        return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0] for r in requirements}

    text = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    section = text[text.index("## Dependencies"):text.index("## Development")]
    core = section[section.index("Core:"):section.index("Optional extras")]
    assert set(re.findall(r"`([\w-]+)`", core)) == names(project["dependencies"])
    described = dict(re.findall(r"`(\w+)` adds (?:the )?`([\w-]+)`", section))
    assert described == {extra: next(iter(names(project["optional-dependencies"][extra]))) for extra in described}
    assert set(described) == {"cli", "fast", "dask", "redis"}


def test_a_retry_whose_wait_a_task_timeout_cuts_is_not_counted_as_cli_md_says() -> None:
    """docs/cli.md and the demo's legend: `calls + retries = attempts + rejected`, a retry whose backoff wait a task
    timeout cuts short included: it never ran and is not counted (a full-suite run of the demo on a loaded machine
    showed 144 + 5 != 148 + 0 while retries were counted as they were scheduled)."""
    from shannon_otel import Retry, RunRecorder, Wave
    from shannon_otel.testing import InMemoryTelemetry, run_virtual

    tel = InMemoryTelemetry()
    recorder = RunRecorder()

    async def down() -> None:
        raise ConnectionError("down")

    async def main() -> None:
        retry = Retry(attempts=3, initial=1.0, jitter="none", name="op", hooks=[recorder], **tel.providers)
        await Wave[None]("w", task_timeout=0.5, policy=retry, hooks=[recorder], **tel.providers).run([down])

    run_virtual(main())
    op = recorder.report().operations["op"]
    assert (op.calls, op.retries, op.attempts, op.rejected) == (1, 0, 1, 0)  # the cut retry never ran
    assert "a task timeout (the demo's waves have `task_timeout=2`) or Ctrl-C cut short never ran and is not in " \
        "`retries`" in " ".join((ROOT / "docs" / "cli.md").read_text(encoding="utf-8").split())


def test_the_readme_and_api_md_say_what_retrys_default_on_does_with_an_open_breaker() -> None:
    """The README said `on=` defaults to "any `Exception`" for `Retry`, but `Retry` leaves an open breaker's
    `CircuitOpenError` (an `Exception`) alone unless `on=` names it or `wait_retry_after=True`: a user reading it
    expected rejections to be retried. Both docs now say so, and the behaviour they describe holds."""
    from shannon_otel import CircuitOpenError, Retry
    from shannon_otel.testing import run_virtual, set_testing

    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    api = " ".join((ROOT / "docs" / "api.md").read_text(encoding="utf-8").split())
    assert "`Retry` retries an open breaker's `CircuitOpenError` only when `on=` names it or with " \
           "`wait_retry_after=True`" in readme
    assert "a `CircuitOpenError` is retried only when `on=` names it" in api
    calls: list[int] = []

    async def rejected() -> None:
        calls.append(1)
        raise CircuitOpenError("docs-open", "open")

    async def main() -> None:
        for retry, tries in ((Retry(attempts=3), 1), (Retry(attempts=3, on=CircuitOpenError), 3)):
            calls.clear()
            try:
                await retry.call(rejected)
            except CircuitOpenError:
                pass
            assert len(calls) == tries, retry

    with set_testing(True):
        run_virtual(main())


def test_the_operation_name_of_an_unnamed_policys_call_is_the_kind_architecture_md_names() -> None:
    """architecture.md's span table said what a named policy and a decorator call their operation, not what
    `Retry().call(fn)` does (`retry`: a span, metric series and log records under that name)."""
    from shannon_otel import CircuitBreaker, Degrade, Fallback, Hedge, Pipeline, Retry, Timeout
    from shannon_otel.testing import InMemoryTelemetry, run_virtual

    row = next(line for line in (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8").splitlines()
               if line.startswith("| `{operation}`"))
    said = re.search(r"`call\(\)` of an unnamed policy: its kind, ([^;]*), a breaker's its name;", row)
    assert said is not None
    kinds = re.findall(r"`(\w+)`", said.group(1))
    tel = InMemoryTelemetry()

    async def ok() -> int:
        return 1

    async def fallback(error: Exception) -> int:
        return 0

    async def main() -> None:
        for policy in (Retry(**tel.providers), Timeout(1, **tel.providers), Fallback(fallback, **tel.providers),
                       Hedge(1, **tel.providers), Degrade(default=0, **tel.providers),
                       Pipeline(Retry(), Timeout(1), **tel.providers), CircuitBreaker("cb", **tel.providers)):
            await policy.call(ok)

    run_virtual(main())
    assert [s.name for s in tel.spans() if not s.name.startswith("attempt")] == [*kinds, "cb"]


def test_the_bad_input_figures_reliability_md_gives_are_the_tables() -> None:
    """docs/reliability.md gave "747 cases over 290 public parameters" after `DetectorConfig.weekly_rho`'s cases
    made the table 754 over 291: the figure it says `benchmarks._bad_inputs.totals()` counts."""
    from benchmarks import _bad_inputs as table

    text = " ".join((ROOT / "docs" / "reliability.md").read_text(encoding="utf-8").split())
    said = re.search(r"\*\*([\d,]+) cases over ([\d,]+) public parameters \([^)]*\), ([\d,]+) clear\*\*", text)
    assert said is not None
    cases, parameters, clear = (int(figure.replace(",", "")) for figure in said.groups())
    # every case is clear: tests/test_bad_inputs.py fails on any that is not
    assert (cases, parameters, clear) == (len(table.cases()), len(table.discover()), len(table.cases()))


# --------------------------------------------------------------------------- the span tables, emitted
def _table(heading: str) -> list[list[str]]:
    """The cells of each body row of the first table after ``heading`` in docs/architecture.md."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    rows: list[list[str]] = []
    for line in text[text.index(f"\n{heading}\n"):].splitlines()[2:]:
        if rows and not line.startswith("|"):
            break
        if line.startswith("|") and not line.startswith("|---"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows[1:]  # the header row out


def _keys(cell: str) -> set[str]:
    """The attribute keys a cell names (`shannon.wave.tasks.{outcome}` stands for one key per outcome)."""
    keys = set()
    for key in re.findall(r"`([a-z_]+(?:\.[a-z_{}]+)+)`", cell):
        outcomes = ("success", "failure", "timeout", "cancellation") if "{outcome}" in key else ("",)
        keys |= {key.replace("{outcome}", outcome) for outcome in outcomes}
    return keys


def test_every_span_and_span_event_the_tables_list_has_exactly_the_attributes_they_name() -> None:
    """docs/architecture.md's Spans, Recovery spans and Recovery span events tables against the spans a
    workload of every policy, a wave with batches, timeouts and measurements, a wave with a retry policy and
    a saga with a failed compensation really exports: each span and event name the tables list has every
    attribute its row names on some span of that name, and none its row leaves out."""
    import asyncio
    import contextlib

    from opentelemetry.trace import SpanKind

    from shannon_otel import (
        CircuitBreaker,
        Degrade,
        Fallback,
        FallbackError,
        Hedge,
        Pipeline,
        Retry,
        Saga,
        SagaError,
        Timeout,
        Wave,
        record,
        record_cost,
        record_tokens,
    )
    from shannon_otel.testing import InMemoryTelemetry, run_virtual

    tel = InMemoryTelemetry()
    providers = tel.providers

    async def work(i: int) -> int:
        record_tokens(input=10, output=5)
        record_cost(0.01)
        record("pages", 3)  # a user-named measurement: not a contract key
        await asyncio.sleep(0.01)
        if i == 3:
            raise ValueError("boom")
        if i == 4:
            await asyncio.sleep(100)
        return i

    async def fails() -> None:
        raise KeyError("down")

    async def slow() -> int:
        await asyncio.sleep(0.3)
        return 1

    async def slow_failure() -> None:
        await asyncio.sleep(0.1)
        raise ValueError("slow failure")

    async def served(error: Exception) -> int:
        return 0

    async def undo(*_: object) -> None:
        return None

    async def broken_undo(*_: object) -> None:
        raise RuntimeError("undo failed")

    async def failing_step(*_: object) -> None:
        raise ValueError("step failed")

    async def main() -> None:
        await Wave[int]("w", max_concurrency=2, task_timeout=1, batch_size=3, **providers).map(work, range(8))
        await Wave[None]("rw", policy=Retry(attempts=2, initial=0.01), **providers).run([fails])
        breaker = CircuitBreaker("b", failure_threshold=1, reset_timeout=100, **providers)
        guarded = Pipeline(Fallback(served), Retry(attempts=2, initial=0.01), breaker, name="op", **providers)
        await guarded.call(fails)
        await guarded.call(fails)  # rejected by the open breaker, served by the fallback
        with contextlib.suppress(FallbackError):  # a fallback failing too: its span carries its error.type
            await Fallback(broken_undo, name="op", **providers).call(fails)
        await Pipeline(Degrade(default=0), Timeout(0.1), name="deg", **providers).call(slow)
        await Hedge(0.1, name="hedged", **providers).call(slow)
        hedged = Pipeline(Hedge(0.05), CircuitBreaker("hb", failure_threshold=10), name="hedged", **providers)
        with contextlib.suppress(ValueError):
            await hedged.call(slow_failure)
        retried = Pipeline(Hedge(0.05), Retry(attempts=2, initial=0.01), name="hedged", **providers)
        with contextlib.suppress(ValueError):
            await retried.call(slow_failure)  # a retry of the hedged attempt: an attempt naming its hedge
        with contextlib.suppress(SagaError):
            async with Saga("s", **providers).begin() as tx:
                await tx.step("a", undo, compensate=undo)
                await tx.step("b", undo, compensate=broken_undo)
                await tx.step("c", failing_step, compensate=undo)

    run_virtual(main())
    operations = {"op", "deg", "hedged", "retry"}
    rows = {cells[0]: cells for cells in [*_table("### Spans"), *_table("### Recovery spans")]}
    emitted: dict[str, set[str]] = {}
    operation = next(t for t in rows if t.startswith("`{operation}`"))  # any name: told apart by the workload's
    patterns = {t: re.sub(r"\\\{\w+\\\}", ".+", re.escape(t[1:t.index("`", 1)])) for t in rows if t != operation}
    for span in tel.spans():
        template = operation if span.name in operations else next(
            (t for t, pattern in patterns.items() if re.fullmatch(pattern, span.name)), None)
        assert template is not None, f"span {span.name!r} is in no table"
        emitted.setdefault(template, set()).update(k for k in span.attributes or {} if "." in k)
        kind = rows[template][1] if rows[template][1] in SpanKind.__members__ else "INTERNAL"  # no kind column
        assert span.kind == SpanKind[kind], span.name
    wrong = {}
    for template, keys in emitted.items():
        cells = rows[template]
        documented = _keys(cells[-2])
        if cells[-2].startswith("as an attempt"):
            documented |= _keys(next(c for t, c in rows.items() if t.startswith("`attempt"))[-2])
        if keys != documented:
            wrong[template] = {"emitted only": keys - documented, "documented only": documented - keys}
    assert wrong == {}
    assert len(emitted) == len(rows) - 1  # every row but the remote span (a Dask worker's)
    events: dict[str, set[str]] = {}
    for span in tel.spans():
        for event in span.events:
            events.setdefault(event.name, set()).update(event.attributes or {})
    for cells in _table("### Recovery span events"):
        name = cells[0].strip("`")
        assert events.get(name) == _keys(cells[-1]), name


def test_every_keyword_a_call_in_the_docs_passes_is_a_parameter() -> None:
    """The signatures test above reads docs/api.md and the README's signatures; the prose of every page calls
    the API too (`TailSampler(processor, *, healthy_ratio=0.1, ...)`, `RedisState(probe_lease_s=60)`,
    `DaskBackend(client, gather_window_s=0.05)`): each keyword one passes is a parameter of what it calls
    (a `CircuitBreaker`'s settings are `BreakerConfig`'s)."""
    import importlib

    public: dict[str, Any] = {}
    for module in ("shannon_otel", "shannon_otel.testing", "shannon_otel.dask", "shannon_otel.redis"):
        loaded = importlib.import_module(module)
        public.update({name: getattr(loaded, name) for name in loaded.__all__ if callable(getattr(loaded, name))})
    wrong, checked = [], 0
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = " ".join(path.read_text(encoding="utf-8").split())
        for name, arguments in re.findall(r"\b(\w+)\(((?:[^()]|\([^()]*\))*)\)", text):
            if name not in public:
                continue
            target = shannon_otel.BreakerConfig if name == "CircuitBreaker" else public[name]
            parameters = inspect.signature(target).parameters
            for keyword in re.findall(r"(?:^|,)\s*(\w+)\s*=(?!=)", re.sub(r"\([^()]*\)", "()", arguments)):
                checked += 1
                if keyword not in parameters and keyword not in inspect.signature(public[name]).parameters:
                    wrong.append(f"{path.name}: {name}({arguments}) has no parameter {keyword}")
    assert wrong == []
    assert checked > 100


def test_every_name_of_the_optional_packages_is_on_its_page() -> None:
    """`shannon_otel.dask` exports `RemoteFunction` (what `backend.remote(fn)` returns); docs/dask.md named it
    nowhere, as api.md once missed thirty names of the main package."""
    import importlib

    for module, page in (("shannon_otel.dask", "dask.md"), ("shannon_otel.redis", "shared-state.md")):
        text = (ROOT / "docs" / page).read_text(encoding="utf-8")
        missing = [name for name in importlib.import_module(module).__all__ if f"`{name}" not in text]
        assert missing == [], (page, missing)


def test_every_panel_the_docs_point_to_is_a_panel_of_that_dashboard() -> None:
    """docs/runbook.md sent the reader of an alert to *Fallbacks*, *Task duration percentiles* and *Task queue
    wait percentiles*; the dashboards' panels are "... by operation" / "... by wave": no panel of those names."""
    from shannon_otel.assets import dashboards

    titles: dict[str, set[str]] = {}
    for model in dashboards().values():
        panels = list(model["panels"])
        while panels:
            panel = panels.pop()
            titles.setdefault(model["title"].rsplit("/ ", 1)[-1], set()).add(panel.get("title", ""))
            panels.extend(panel.get("panels", []))
    wrong, checked = [], 0
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = " ".join(path.read_text(encoding="utf-8").split())
        # "Grafana **Resilience**: *Breaker state* (state timeline) and *Breaker transitions* show ..."
        for dashboard, sentence in re.findall(r"Grafana \*\*(\w+)\*\*:(.*?)(?= - |\*\*|$)", text):
            for panel in re.findall(r"(?<![*\w])\*([A-Z][^*]+)\*(?![*\w])", sentence):
                checked += 1
                if panel not in titles[dashboard]:
                    wrong.append(f"{path.name}: {dashboard} has no panel {panel!r}")
    assert wrong == []
    assert checked >= 10


def test_every_repository_path_the_docs_name_exists() -> None:
    """Each `collector-config/...`, `dashboards/...`, `scripts/...`, `tests/...` (with its `::test`),
    `benchmarks/...`, `shannon_otel/...`, `constraints/...` or `docs/...` path README.md and docs/*.md name is in
    the repository (a glob matches something). docs/benchmarks.md is left out: a log of runs, it names files of
    branches that were measured and not merged."""
    tops = ("collector-config", "dashboards", "scripts", "tests", "benchmarks", "shannon_otel", "constraints", "docs")
    missing, checked = [], 0
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        if path.name == "benchmarks.md":
            continue
        for named in re.findall(rf"`((?:{'|'.join(tops)})/[^`\s]*)`", path.read_text(encoding="utf-8")):
            file, _, test = named.partition("::")
            checked += 1
            if not any(ROOT.glob(file.rstrip("/"))):
                missing.append(f"{path.name}: {named}")
            elif test and f"def {test}(" not in (ROOT / file).read_text(encoding="utf-8"):
                missing.append(f"{path.name}: {named} (no such test)")
    assert missing == []
    assert checked > 50


def test_otel_bsp_export_timeout_bounds_no_export_as_the_docs_now_say(monkeypatch: Any) -> None:
    """docs/reliability.md told users of their own providers to bound the exit with ``OTEL_BSP_EXPORT_TIMEOUT``, and
    configure()'s docstring called it honoured: the SDK's batch processor reads it and never uses it (a flush against
    a silent collector took the exporter's 10 s with it at 500 ms). Pinned, so the docs are revisited when it does."""
    import threading

    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    monkeypatch.setenv("OTEL_BSP_EXPORT_TIMEOUT", "1")
    entered, release, flushed = threading.Event(), threading.Event(), threading.Event()

    class Silent(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            entered.set()
            release.wait(60)
            return SpanExportResult.SUCCESS

    processor = BatchSpanProcessor(Silent())
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    provider.get_tracer("app").start_span("s").end()
    threading.Thread(target=lambda: flushed.set() if processor.force_flush() else None, daemon=True).start()
    try:
        assert entered.wait(60)
        assert not flushed.wait(1.0)  # 1 ms is what the variable allows; still exporting a thousand times later
    finally:
        release.set()
    assert flushed.wait(60)
    provider.shutdown()
    reliability = (ROOT / "docs" / "reliability.md").read_text(encoding="utf-8")
    assert "`OTEL_BSP_EXPORT_TIMEOUT` (and `BatchSpanProcessor(export_timeout_millis=)`) bounds nothing" in reliability
    assert "and `OTEL_BSP_EXPORT_TIMEOUT`, or let" not in reliability
    from shannon_otel import configure

    doc = configure.__doc__ or ""
    assert "``OTEL_BSP_EXPORT_TIMEOUT`` is checked, but the SDK's processor does not use it" in doc


def test_the_efficiency_metrics_description_names_the_slots_the_value_is_of() -> None:
    """shannon.wave.parallel_efficiency was described as busy time / (wall time x concurrency limit): a wave of 2
    one-second tasks under max_concurrency=100 would read 0.02 by it, yet reads 1.0 (its slots are capped by its
    task count, as docs/architecture.md's WaveReport section says)."""
    import asyncio

    from shannon_otel import Wave
    from shannon_otel._telemetry import WAVE_EFFICIENCY
    from shannon_otel.testing import InMemoryTelemetry, run_virtual

    tel = InMemoryTelemetry()

    async def work() -> None:
        await asyncio.sleep(1.0)

    async def main() -> None:
        await Wave[None]("two", max_concurrency=100, clock=asyncio.get_running_loop().time, **tel.providers).run(
            [work, work])

    run_virtual(main())
    [point] = tel.points("shannon.wave.parallel_efficiency")
    assert point.value == 1.0
    assert "concurrency limit" not in WAVE_EFFICIENCY.description
    assert "max_concurrency capped by its task count, batch_size and a stream's buffer" in WAVE_EFFICIENCY.description


def _heading_anchors(text: str) -> set[str]:
    """The anchors GitHub makes of a page's headings: lower case, punctuation but ``-`` and ``_`` dropped, spaces
    to ``-``; a repeated one gets ``-1``, ``-2``... (fenced blocks hold no headings)."""
    text = re.sub(r"^ *```.*?^ *```", "", text, flags=re.S | re.M)
    anchors: set[str] = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *#* *$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        anchor, n = slug, 0
        while anchor in anchors:
            n += 1
            anchor = f"{slug}-{n}"
        anchors.add(anchor)
    return anchors


def test_the_readme_links_files_of_the_repository_by_absolute_urls() -> None:
    """README.md is the package's page on PyPI, where a relative link (`docs/api.md`, `LICENSE`) resolves against
    pypi.org and lands on a 404: it links the repository's files by URL, under the Homepage pyproject names (the
    link check below maps those URLs back to the files)."""
    import tomllib

    homepage = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["urls"]["Homepage"]
    assert f"{homepage}/blob/main/" == _REPOSITORY_FILES
    text = re.sub(r"^ *```.*?^ *```", "", (ROOT / "README.md").read_text(encoding="utf-8"), flags=re.S | re.M)
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert [link for link in links if not re.match(r"[a-z]+:|#", link)] == []
    assert sum(link.startswith(_REPOSITORY_FILES) for link in links) >= 10


def test_every_link_of_the_docs_and_of_the_alerts_reaches_its_file_and_heading() -> None:
    """A link `[text](docs/x.md#anchor)` in README.md or docs/*.md opens an existing file and, with an anchor, one
    of its headings; every alert's `runbook_url` (`.../runbook.md#<alert name, lower case>`) a runbook section:
    a renamed heading or alert left the link landing at the top of the page."""
    from shannon_otel.assets import alert_rules

    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    anchors = {page: _heading_anchors(page.read_text(encoding="utf-8")) for page in pages}
    broken, checked = [], 0
    for page in pages:
        text = re.sub(r"^ *```.*?^ *```", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)
        for link in re.findall(r"\]\(([^)\s]+)\)", text):
            link = link.removeprefix(_REPOSITORY_FILES) if page.name == "README.md" else link
            if re.match(r"[a-z]+:", link):
                continue
            file, _, anchor = link.partition("#")
            target = (page.parent / file).resolve() if file else page
            checked += 1
            if not target.exists() or (anchor and anchor not in anchors.get(target, set())):
                broken.append(f"{page.name}: {link}")
    for group in alert_rules()["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                anchor = rule["annotations"]["runbook_url"].partition("#")[2]
                checked += 1
                if anchor not in anchors[ROOT / "docs" / "runbook.md"]:
                    broken.append(f"alert {rule['alert']}: runbook.md#{anchor}")
    assert broken == []
    assert checked > 30


def test_every_delay_and_limit_a_log_line_of_the_docs_shows_is_one_the_log_writes() -> None:
    """docs/logging.md showed the demo's `--verbose` line "retrying search-api in 0.00 s (attempt 2/4)": since a
    1 ms backoff is written `0.001 s` (a delay or limit is never shown as zero), the log cannot print that line."""
    from shannon_otel._logs._records import as_seconds

    shown = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        if path.name != "benchmarks.md":
            text = " ".join(path.read_text(encoding="utf-8").split())
            shown += [(path.name, s) for s in re.findall(r"(?:retrying \S+|timed out) after ([0-9][0-9.]*) s", text)]
    wrong = [f"{name}: {seconds} s" for name, seconds in shown
             if float(seconds) <= 0 or as_seconds(float(seconds)) != seconds]
    assert wrong == []
    assert len(shown) >= 4


def test_a_timeout_error_the_users_code_raises_ends_its_task_timeout_and_its_attempts_failure() -> None:
    """architecture.md's Outcomes said "a task (or attempt) ends `timeout`" on any TimeoutError, the user's own
    included; an attempt ends `timeout` only when a Timeout policy or the wave's task_timeout cut it (the recovery
    spans table), and a read timeout the user's code raised is a `failure` attempt."""
    from shannon_otel import Retry, Wave
    from shannon_otel.testing import InMemoryTelemetry, run_virtual

    tel = InMemoryTelemetry()

    async def read() -> None:
        raise TimeoutError("read timed out")

    async def main() -> None:
        retry = Retry(attempts=2, initial=0.01, name="op", **tel.providers)
        await Wave[None]("w", policy=retry, **tel.providers).run([read])

    run_virtual(main())
    outcomes = {span.name: (span.attributes or {}).get("shannon.attempt.outcome",
                                                       (span.attributes or {}).get("shannon.task.outcome"))
                for span in tel.spans()}
    assert (outcomes["attempt 1"], outcomes["attempt 2"], outcomes["task w"]) == ("failure", "failure", "timeout")
    outcomes_section = " ".join((ROOT / "docs" / "architecture.md").read_text(encoding="utf-8").split())
    assert "A task (or attempt) ends `timeout`" not in outcomes_section
    assert "a `TimeoutError` the attempt's own code raised is a `failure`" in outcomes_section


def test_the_p95_the_api_page_says_a_summary_reads_is_the_one_it_reads() -> None:
    """docs/api.md said "a p95 of whole token counts 45 and 48 may read 47.55": of one task of each, the p95 is
    the last rank, which a Summary reads exactly (48). It reads 47.55 for ten tasks of each, as the page now says."""
    import asyncio

    row = " ".join(_api_rows()["Summary"].split())
    sentence = re.search(r"the p95 of (\d+) tasks of (\d+) tokens and (\d+) of (\d+) reads ([\d.]+), that of one "
                         r"task of each (\d+)\)", row)
    assert sentence is not None, row
    n_low, low, n_high, high, p95, p95_of_two = sentence.groups()

    async def work(tokens: int) -> None:
        shannon_otel.record_tokens(input=tokens, output=0)

    async def p95_of(tokens: list[int]) -> float:
        result = await shannon_otel.Wave("w", instrument=False).map(work, tokens)
        return result.report.measurements["shannon.task.tokens.input"].p95

    assert round(asyncio.run(p95_of([int(low)] * int(n_low) + [int(high)] * int(n_high))), 2) == float(p95)
    assert asyncio.run(p95_of([int(low), int(high)])) == float(p95_of_two)


def test_architecture_md_lists_every_module_of_the_package() -> None:
    """The modules table of docs/architecture.md is where a reader finds each concept's one place; the module
    ``_forwarding.py`` (a policy decorator's wrapper, read through by ``task()``) came without a line there. Each
    module has its row (a package's modules are named in their package's row)."""
    package = ROOT / "shannon_otel"
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    table = text[text.index("## Modules"):text.index("## Data flow")]
    rows = {line.split("`")[1]: line for line in table.splitlines() if line.startswith("| `")}
    missing = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package).parts
        if len(parts) == 1:
            if parts[0] != "__init__.py" and parts[0] not in rows and f"`{parts[0]}`" not in table:
                missing.append(parts[0])
        elif parts[-1] != "__init__.py" and f"`{parts[-1]}`" not in rows.get(f"{parts[0]}/", ""):
            missing.append("/".join(parts))
    assert missing == [], f"docs/architecture.md's module table does not name {missing}"


def test_the_tail_samplers_docstring_names_every_count_its_stats_return() -> None:
    """``help(TailSampler)`` said ``stats()`` "returns them all" after naming four counts; it returns a fifth,
    ``buffered_spans`` (the spans held undecided now), which a reader of the docstring never learned of."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    sampler = shannon_otel.TailSampler(SimpleSpanProcessor(InMemorySpanExporter()))
    named = set(re.findall(r"``(\w+)``", sampler.__doc__ or ""))
    assert sorted(set(sampler.stats()) - named) == []


def test_the_range_the_retry_docstring_gives_its_random_source_is_the_range_it_takes() -> None:
    """``help(Retry)`` said ``random`` is "a callable returning ``[0, 1)``", and so did the TypeError of one that is
    not callable; a source returning 1.0 is taken (the full backoff), and its ValueError said "[0, 1]". The docstring's
    interval is now the one the retry applies, checked at both ends and just past them."""
    import asyncio

    doc = " ".join((shannon_otel.Retry.__doc__ or "").split())
    found = re.search(r"``random`` \(a ``random\.Random`` or a callable returning (?:a number in )?"
                      r"``([\[(])(\d+), (\d+)([\])])``\)", doc)
    assert found is not None, doc
    opening, low, high, closing = found.groups()

    def takes(value: float) -> bool:
        failed = []

        async def fail() -> None:
            failed.append(1)
            if len(failed) < 2:
                raise ConnectionError("down")

        async def sleep(seconds: float) -> None:
            pass

        retry = shannon_otel.Retry(attempts=2, random=lambda: value, sleep=sleep, instrument=False)
        try:
            asyncio.run(retry.call(fail))
        except ValueError as exc:
            refused.append(str(exc))
            return False
        return True

    refused: list[str] = []

    assert takes(float(low)) == (opening == "[")
    assert takes(float(high)) == (closing == "]")
    assert not takes(math.nextafter(float(low), -math.inf))
    assert not takes(math.nextafter(float(high), math.inf))
    assert all(message.startswith("random (the jitter source) must return values in") for message in refused)


def test_what_logging_md_says_replaces_the_default_logging_hook_is_what_replaces_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """docs/logging.md said "pass a hook in `hooks=`; it replaces the default": a `RunRecorder` or an `AnomalyHook`
    in `hooks=` leaves the default logging hook in place (only a `LoggingHook` replaces it), so a reader silencing
    the retry records that way still got them, and one adding a recorder expected to lose them."""
    import asyncio
    import uuid

    text = " ".join((ROOT / "docs" / "logging.md").read_text(encoding="utf-8").split())
    said = re.search(r"Per entry point: pass a `(\w+)` in `hooks=`; it replaces the default \(any other hook, a "
                     r"`(\w+)` or an `(\w+)`, leaves the default in place: `hooks=\[\]` logs as before\)", text)
    assert said is not None
    replacing, *others = said.groups()
    tel = shannon_otel.testing.InMemoryTelemetry()  # an SDK provider: every traced call is logged by default

    async def fail() -> None:
        raise ConnectionError("down")

    async def sleep(seconds: float) -> None:
        pass

    def logs_its_retry(hooks: list[Any]) -> bool:
        name = f"op-{uuid.uuid4().hex}"  # a key of its own: the default hook's flood limiter holds none back
        retry = shannon_otel.Retry(attempts=2, sleep=sleep, name=name, hooks=hooks, **tel.providers)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="shannon_otel"), contextlib.suppress(ConnectionError):
            asyncio.run(retry.call(fail))
        return any(r.getMessage().startswith(f"retrying {name!r}") for r in caplog.records)

    assert logs_its_retry([])
    for other in others:
        assert logs_its_retry([getattr(shannon_otel, other)()]), other
    assert not logs_its_retry([getattr(shannon_otel, replacing)(enabled=False)])
    tel.shutdown()


def test_every_attribute_a_telemetry_handle_sets_is_in_its_api_row() -> None:
    """The test above reads a class's attributes; `Telemetry` sets its providers on the instance, so docs/api.md's
    row omitted `tracer_provider`, `meter_provider`, `logger_provider` and `shutdown_timeout_s`, though
    docs/logging.md has the reader pass `telemetry.logger_provider` to a `LoggingHandler`. It names them now, and
    logging.md says when `logger_provider` is `None`: `exporter="none"` leaves the logs off even with `logs=True`."""
    row = _api_rows()["Telemetry"]
    written = {word for span in re.findall(r"`([^`]*)`", row) for word in re.findall(r"\w+", span)}
    telemetry = shannon_otel.configure("docs", exporter="none", logs=True, set_global=False)
    try:
        attributes = {name for name in vars(telemetry) if not name.startswith("_")}
        assert sorted(attributes - written) == []
        assert telemetry.logger_provider is None
    finally:
        telemetry.shutdown()
    logging_md = " ".join((ROOT / "docs" / "logging.md").read_text(encoding="utf-8").split())
    assert ('`exporter="none"` leaves the logs signal off even with `logs=True`, and `Telemetry.logger_provider` is '
            "then `None`") in logging_md
