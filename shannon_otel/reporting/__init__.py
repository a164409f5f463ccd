"""Run-level reporting: the ``RunRecorder`` hook (``_recorder.py``; its live counters in
``_counters.py``, its per-wave, per-call and per-saga observers in ``_observers.py``), the
``RunReport`` it builds and the advice only a run shows (``_run.py``; each breaker's transitions counted
in ``_breakers.py``), and what advice is plus the
advice one wave earns (``_advice.py``, a leaf: the executor's ``WaveReport.recommendations`` reads it).

Downstream of the executor and the policies in the flow: the recorder is a hook like any other,
fed by events; reports and advice are pure data and pure functions of what it recorded. This
``__init__`` imports nothing, so the executor loading the wave advice loads nothing else of it;
the public names are exported by ``shannon_otel``.
"""
