"""The OTLP/gRPC exporters' variables as the specification reads them: blank is unset.

Before, the SDK's gRPC exporters (the default protocol) read what ``configure()`` had resolved differently: a
blank ``OTEL_EXPORTER_OTLP[_<signal>]_INSECURE`` as false (TLS to a plaintext collector, every export failed,
over ``OTEL_EXPORTER_OTLP_INSECURE=true`` or an ``http://`` endpoint), a blank ``..._<signal>_CERTIFICATE`` as
"the system's CAs" over ``OTEL_EXPORTER_OTLP_CERTIFICATE``, and they parsed ``..._<signal>_TIMEOUT`` though
given a timeout: a blank or malformed one raised "could not convert string to float" out of ``configure()``
(after the warning that it was ignored). The SDK's HTTP exporters already read blank as unset.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from shannon_otel import configure

_VARIABLES = [name for name in os.environ if name.startswith("OTEL_")]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")  # gRPC, the default protocol; spans only
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")


def _grpc_span_exporter() -> Any:
    handle = configure(set_global=False, shutdown_timeout_s=0.5)
    handle.shutdown()
    return handle._processors[0].exporter.inner


@pytest.mark.parametrize("value", ["abc", "", " "])
def test_a_blank_or_malformed_signal_timeout_is_not_parsed_by_the_grpc_exporter(
    monkeypatch: pytest.MonkeyPatch, value: str,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "3")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", value)
    before = dict(os.environ)
    exporter = _grpc_span_exporter()
    assert exporter._timeout == 3.0  # blank: unset; malformed: ignored as if unset (the specification), so 3 s
    assert dict(os.environ) == before  # the variables are back as they were


@pytest.mark.parametrize(("variables", "endpoint"), [
    ({"OTEL_EXPORTER_OTLP_INSECURE": "true", "OTEL_EXPORTER_OTLP_TRACES_INSECURE": ""}, "collector:4317"),
    ({"OTEL_EXPORTER_OTLP_INSECURE": " "}, "http://collector:4317"),
])
def test_a_blank_insecure_variable_is_unset_not_false(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], endpoint: str,
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    assert _grpc_span_exporter()._insecure is True


def test_a_blank_signal_certificate_leaves_the_general_one_in_force(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    """The general certificate is read (here a directory, refused naming it), not replaced by the system's CAs."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4317")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(tmp_path))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "")
    with pytest.raises(ValueError, match=r"^OTEL_EXPORTER_OTLP_CERTIFICATE="):
        configure(set_global=False, shutdown_timeout_s=0.5)
