"""The anomalies dashboard: detector scores, anomaly events by severity, the most anomalous series."""

from __future__ import annotations

from shannon_otel import _telemetry as t
from shannon_otel.anomaly import HOOK_DEFAULTS

from . import _grafana as g
from . import _panels as p
from . import _promql as q

UID = "shannon-otel-anomalies"

JOB = 'job=~"$job"'
SIGNAL = q.match(t.ANOMALY_SIGNAL, "$signal")
SERIES, SIGNAL_LABEL = q.label(t.ANOMALY_SERIES), q.label(t.ANOMALY_SIGNAL)
SEVERITY = q.label(t.ANOMALY_SEVERITY)
SEVERITY_COLORS = {t.Severity.WARNING.value: "orange", t.Severity.CRITICAL.value: "red"}
# The AnomalyHook's default severity thresholds (the hook is what scores the gauge's series; a bare
# DetectorConfig() has others); a detector configured otherwise keeps its own.
_DEFAULTS = HOOK_DEFAULTS
SCORE_THRESHOLDS = {
    _DEFAULTS.warning: SEVERITY_COLORS[t.Severity.WARNING], _DEFAULTS.critical: SEVERITY_COLORS[t.Severity.CRITICAL],
}


def annotation() -> p.Json:
    """Anomaly events as dashboard annotations: 1 at each step with events, 0 (not shown) elsewhere."""
    events = q.events(q.sel(t.ANOMALY_EVENTS, 'job=~"$job"'), "1m")
    per_series = q.sum_by((q.JOB, t.ANOMALY_SERIES, t.ANOMALY_SEVERITY), events)
    return g.annotation("Anomalies", f"{per_series} > bool 0",
                        f"{{{{{SEVERITY}}}}} anomaly: {p.JOB_LEGEND}{{{{{SERIES}}}}}", "red")


def anomalies() -> p.Json:
    """The anomalies dashboard model."""
    score = q.sel(t.ANOMALY_SCORE, JOB, SIGNAL)
    events = q.sel(t.ANOMALY_EVENTS, JOB, SIGNAL)
    per_series = (q.JOB, t.ANOMALY_SERIES, t.ANOMALY_SIGNAL)
    critical = q.sel(t.ANOMALY_EVENTS, JOB, SIGNAL, q.eq(t.ANOMALY_SEVERITY, t.Severity.CRITICAL))
    peak = f"max by ({q.by(*per_series)}) (max_over_time({score}[$__range]))"
    panels = [
        p.stat("Anomalies detected", "Anomaly events in the selected time range, any severity.", "short",
               f"sum({q.events(events, '$__range')}) or vector(0)", thresholds={1: "orange"}),
        p.stat("Critical anomalies", "Anomaly events of critical severity in the selected time range.",
               "short",
               f"sum({q.events(critical, '$__range')}) or vector(0)", thresholds={1: "red"}),
        p.stat("Highest score", "Highest anomaly score of any watched series in the selected time range "
               "(0 = normal, 1 = most anomalous; colored at the anomaly hook's default warning and critical "
               "thresholds).", "none", f"max(max_over_time({score}[$__range]))", thresholds=SCORE_THRESHOLDS),
        # Counted per job, not per instance: a restarted process' series linger until they expire.
        p.stat("Watched series", "Series (signal x wave/operation) the detector scores now, per job.", "short",
               f"count(max by ({q.by(*per_series)}) ({score}))"),
        p.timeseries("Anomaly score by series", "Latest detector score of each watched series, in [0, 1]. "
                     "A score at or above the detector's warning/critical thresholds (dashed lines: the "
                     "defaults) is reported as an anomaly event and as a span event on the offending task "
                     "span.", "none",
                     [p.target(f"max by ({q.by(*per_series)}) ({score})",
                               f"{p.JOB_LEGEND}{{{{{SERIES}}}}} ({{{{{SIGNAL_LABEL}}}}})")], min_=0, max_=1, width=24,
                     thresholds=SCORE_THRESHOLDS, link=True),
        p.timeseries("Anomaly events by severity", "Anomalies detected in each interval (each bar counts its own), by "
                     "severity.", "short",
                     [p.target(q.sum_by((t.ANOMALY_SEVERITY,), q.step_events(events)), f"{{{{{SEVERITY}}}}}")],
                     bars=True, stack=True, colors=SEVERITY_COLORS),
        p.bargauge("Top 10 series by peak score", "The ten watched series with the highest anomaly score in "
                   "the selected time range.", "none", f"topk(10, {peak})",
                   f"{p.JOB_LEGEND}{{{{{SERIES}}}}} ({{{{{SIGNAL_LABEL}}}}})", link=True),
        p.table("Anomaly events by series", "Anomaly events per series, signal and severity in the selected "
                "time range, most first. Open the trace of an anomalous task from the job's Jaeger link.",
                "short",
                f"sort_desc({q.sum_by((*per_series, t.ANOMALY_SEVERITY), q.events(events, '$__range'))})",
                width=24, link=True),
    ]
    variables = [
        g.query_variable("job", "Job (service)", q.sel(t.ANOMALY_SCORE), q.JOB),
        g.query_variable("signal", "Signal", q.sel(t.ANOMALY_SCORE, JOB), t.ANOMALY_SIGNAL),
    ]
    return g.dashboard(
        UID, "Shannon OTel / Anomalies",
        "The streaming anomaly detector of shannon-otel: scores per watched series, anomaly events and the "
        "most anomalous series.",
        panels, variables, (annotation(),),
    )
