"""TailSampler across fork(): a child process decides and exports its own spans only, and never hangs on
state inherited from a parent thread caught mid-decision."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from _forked import run_python

_FORKED = '''
import json, os, sys, time
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from shannon_otel import TailSampler

exporter = InMemorySpanExporter()
sampler = TailSampler(SimpleSpanProcessor(exporter), healthy_ratio=1.0)
provider = TracerProvider()
provider.add_span_processor(sampler)
tracer = provider.get_tracer("app")
request = tracer.start_span("request")  # open in the parent at the fork: its ended steps are buffered
for i in range(3):
    tracer.start_span(f"parent step {i}", context=trace.set_span_in_context(request)).end()
if sys.argv[1] == "locked":
    sampler._lock.acquire()  # a parent thread deciding a trace at the instant of the fork
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(read)
    tracer.start_span("child step", context=trace.set_span_in_context(request)).end()
    provider.shutdown()
    seen = {"names": sorted(s.name for s in exporter.get_finished_spans()), "stats": sampler.stats()}
    os.write(write, json.dumps(seen).encode())
    os._exit(0)
os.close(write)
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    done, _ = os.waitpid(pid, os.WNOHANG)
    if done:
        print(os.read(read, 1 << 16).decode(), flush=True)
        break
    time.sleep(0.05)
else:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    print(json.dumps({"hung": True}), flush=True)
if sys.argv[1] == "locked":
    sampler._lock.release()
'''


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() here")
@pytest.mark.parametrize("case", ["idle", "locked"])
def test_a_forked_child_exports_its_own_spans_once_and_never_the_parents(tmp_path: Path, case: str) -> None:
    # Before: the child inherited the parent's undecided part (three ended steps under the open request) and
    # exported it at its own shutdown (the parent exports it too: each span twice in the backend); and a child
    # forked while a parent thread held the sampler's lock hung at its first span.
    script = tmp_path / "forked.py"
    script.write_text(_FORKED)
    done = run_python("-W", "ignore::DeprecationWarning", str(script), case, timeout_s=60)
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen == {"names": ["child step"], "stats": {
        "kept_traces": 1, "dropped_traces": 0, "overflow_traces": 0, "abandoned_spans": 0, "buffered_spans": 0}}
