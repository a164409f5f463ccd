"""``OTEL_TRACES_SAMPLER`` and ``OTEL_PYTHON_ID_GENERATOR`` as the SDK's own configurator reads them.

Before: ``configure()`` left both to the TracerProvider, which knows only the SDK's six samplers and no id
generator variable: a sampler or id generator of an installed package (entry points
``opentelemetry_traces_sampler`` / ``opentelemetry_id_generator``, which ``opentelemetry-instrument``'s default
configurator loads) was ignored, every trace kept and given random ids; a blank ``OTEL_TRACES_SAMPLER`` logged
"Couldn't recognize sampler ." (blank is unset), and an unknown one a warning naming no variable.
"""

from __future__ import annotations

import logging
import sys
import textwrap
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shannon_otel import configure

_PLUGIN = "shannon_test_otel_plugin"
_TRACE_ID = 0x0123456789ABCDEF0123456789ABCDEF


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed package providing a sampler ``half`` (a ratio from its argument), a sampler ``broken`` and an id
    generator ``fixed``, as a distribution on ``sys.path``."""
    (tmp_path / f"{_PLUGIN}.py").write_text(textwrap.dedent(f"""
        from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
        from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

        def half(arg):
            return TraceIdRatioBased(float(arg))

        def broken(arg):
            raise RuntimeError("the plugin's bug")

        class Fixed(RandomIdGenerator):
            def generate_trace_id(self):
                return {_TRACE_ID}
    """))
    info = tmp_path / f"{_PLUGIN}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {_PLUGIN}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[opentelemetry_traces_sampler]\nhalf = {_PLUGIN}:half\nbroken = {_PLUGIN}:broken\n\n"
        f"[opentelemetry_id_generator]\nfixed = {_PLUGIN}:Fixed\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, _PLUGIN, raising=False)
    for name in ("OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "OTEL_PYTHON_ID_GENERATOR", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)


def _sampler_description() -> str:
    handle = configure(exporter="none", set_global=False)
    handle.shutdown()
    return str(handle.tracer_provider.sampler.get_description())


def test_a_sampler_of_an_installed_package_is_used_with_its_argument(
    plugin: None, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "half")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.5")
    assert _sampler_description() == "TraceIdRatioBased{0.5}"


def test_an_id_generator_of_an_installed_package_makes_the_trace_ids(
    plugin: None, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_PYTHON_ID_GENERATOR", "fixed")
    spans = InMemorySpanExporter()
    handle = configure(exporter="none", set_global=False, span_exporters=[spans])
    with handle.tracer_provider.get_tracer("t").start_as_current_span("s"):
        pass
    handle.shutdown()
    assert [s.context.trace_id for s in spans.get_finished_spans()] == [_TRACE_ID]


@pytest.mark.parametrize(("variable", "value"), [
    ("OTEL_TRACES_SAMPLER", "no_such_sampler"), ("OTEL_TRACES_SAMPLER", "broken"),
    ("OTEL_PYTHON_ID_GENERATOR", "no_such_ids"),
])
def test_an_unknown_or_failing_plugin_name_is_ignored_with_a_warning_naming_the_variable(
    plugin: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, variable: str, value: str,
) -> None:
    monkeypatch.setenv(variable, value)
    with caplog.at_level(logging.WARNING):
        assert _sampler_description().startswith("ParentBased{root:AlwaysOnSampler")  # the default
    assert [r for r in caplog.records if r.getMessage().startswith(f"{variable}={value!r}: ")]


@pytest.mark.parametrize(("value", "expected"), [
    ("", "ParentBased{root:AlwaysOnSampler"), ("  ", "ParentBased{root:AlwaysOnSampler"),
    ("ALWAYS_OFF", "AlwaysOffSampler"), (" always_off ", "AlwaysOffSampler"),
])
def test_a_blank_or_padded_sampler_variable_is_read_without_a_warning(
    plugin: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, value: str, expected: str,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", value)
    with caplog.at_level(logging.WARNING):
        assert _sampler_description().startswith(expected)
    assert not [r for r in caplog.records if "sampler" in r.getMessage().lower()]


def test_a_ratio_argument_out_of_range_is_ignored_with_a_warning_naming_it(
    plugin: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", " traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "2")
    with caplog.at_level(logging.WARNING):
        assert _sampler_description() == "TraceIdRatioBased{1.0}"
    assert [r for r in caplog.records if r.getMessage().startswith("OTEL_TRACES_SAMPLER_ARG='2'")]


@pytest.mark.parametrize("sampler", ["traceidratio", "parentbased_traceidratio", "TraceIdRatio"])
def test_the_sdks_own_ratio_samplers_say_why_their_argument_is_ignored_and_take_an_unset_one_as_1(
    plugin: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, sampler: str,
) -> None:
    """docs/reliability.md: a ratio outside [0, 1] is ignored with a warning naming the variable. Only a padded name
    (" traceidratio") came here; `traceidratio` itself, the usual spelling, went to the TracerProvider, which warned
    "Could not convert TRACES_SAMPLER_ARG to float" for 2 (a float) and for an unset argument, whose default the
    specification makes 1.0."""
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", sampler)
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "2")
    with caplog.at_level(logging.WARNING):
        assert "TraceIdRatioBased{1.0}" in _sampler_description()
    said = [r.getMessage() for r in caplog.records]
    assert [m for m in said if m.startswith("OTEL_TRACES_SAMPLER_ARG='2' is not a ratio in [0, 1]")], said
    assert not [m for m in said if "Could not convert" in m], said
    caplog.clear()
    for unset in (None, " "):
        if unset is None:
            monkeypatch.delenv("OTEL_TRACES_SAMPLER_ARG")
        else:
            monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", unset)
        with caplog.at_level(logging.WARNING):
            assert "TraceIdRatioBased{1.0}" in _sampler_description()
        assert not [r for r in caplog.records if "SAMPLER" in r.getMessage()]
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    assert "TraceIdRatioBased{0.25}" in _sampler_description()
