"""configure() called again, with what an earlier configuration holds: refused up front, the earlier one intact."""

from __future__ import annotations

import asyncio
import threading

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shannon_otel import PrometheusReader, Wave, bridged, configure
from shannon_otel import _telemetry as tel


async def _noop() -> int:
    return 1


def _task_counts(reader: PrometheusReader) -> list[str]:
    name = tel.TASK_DURATION.prometheus + "_count"
    return [line for line in reader.scrape().splitlines() if line.startswith(name)]


def test_a_reader_of_an_earlier_configure_is_refused_naming_it_and_the_earlier_page_keeps_its_histograms() -> None:
    # The SDK refused the reused reader with a bare Exception from MeterProvider(), naming no parameter, after
    # configure() had handed the reader the new (never used) bridge: the first configuration's Prometheus page
    # lost every task histogram, and the failed call's span processor thread ran on.
    reader = PrometheusReader()
    with configure("first", exporter="none", metric_readers=[reader], set_global=False) as first:
        wave: Wave[int] = Wave("w", tracer_provider=first.tracer_provider, meter_provider=first.meter_provider)
        asyncio.run(wave.run([_noop]))
        before = _task_counts(reader)
        assert before
        threads = set(threading.enumerate())
        with pytest.raises(ValueError, match=r"metric_readers\[1\] \(PrometheusReader\) is registered"):
            configure("second", exporter="none", metric_readers=[PrometheusReader(), reader],
                      span_exporters=[InMemorySpanExporter()], set_global=False)
        assert set(threading.enumerate()) <= threads  # nothing started
        assert _task_counts(reader) == before
    with pytest.raises(ValueError, match=r"metric_readers\[0\]"):  # shut down: still the first provider's
        configure("third", exporter="none", metric_readers=[reader], set_global=False)


@pytest.mark.parametrize("wrap", [False, True])
def test_one_reader_given_twice_is_refused_naming_the_second(wrap: bool) -> None:
    reader = PrometheusReader()
    readers = [bridged(reader), reader] if wrap else [reader, reader]
    with pytest.raises(ValueError, match=r"metric_readers\[1\]"):
        configure("twice", exporter="none", metric_readers=readers, set_global=False)
    with configure("once", exporter="none", metric_readers=[reader], set_global=False):  # not taken by the refusal
        pass
