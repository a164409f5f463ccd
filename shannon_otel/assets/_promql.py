"""PromQL built from the telemetry contract, so renaming a metric or attribute renames every query.

Names follow the OTLP -> Prometheus translation of the collector's ``prometheus`` exporter:
:attr:`MetricSpec.prometheus` for series names, attribute keys with dots (and any other symbol)
turned into ``_`` for labels. The resource's ``service.name`` (with ``service.namespace/`` in front
when set) becomes ``job`` and ``service.instance.id`` becomes ``instance``; the bundled collector config
(``resource_to_telemetry_conversion``) also puts ``service.name`` itself on every series as ``service_name``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from shannon_otel._telemetry import MetricSpec

JOB: str = "job"
INSTANCE: str = "instance"
#: ``service.name`` unchanged: ``job`` cannot give it back (``a/b/c`` is namespace ``a`` and name ``b/c``, or
#: ``a/b`` and ``c``, or no namespace at all), so every grouping that keeps ``job`` keeps it too (see :func:`by`).
SERVICE_NAME: str = "service_name"
#: The label :func:`with_service` adds: the Jaeger service (``service.name``) of a series.
SERVICE: str = "service"

_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def label(attribute: str) -> str:
    """The Prometheus label an OTel attribute key becomes (``shannon.wave.name`` -> ``shannon_wave_name``)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", attribute)


def series(spec: MetricSpec, suffix: str = "") -> str:
    """The series name of ``spec``; histograms need one of ``_bucket``, ``_sum``, ``_count``."""
    if (spec.kind == "histogram") != (suffix in _HISTOGRAM_SUFFIXES):
        raise ValueError(f"{spec.name} ({spec.kind}) cannot take suffix {suffix!r}")
    return spec.prometheus + suffix


def string(text: str) -> str:
    """``text`` escaped for a double-quoted PromQL string (a label value with a quote or a backslash,
    a wave named ``a"b``, made the whole rule file invalid: Prometheus refuses to load it)."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def eq(attribute: str, value: str) -> str:
    return f'{label(attribute)}="{string(value)}"'


def ne(attribute: str, value: str) -> str:
    return f'{label(attribute)}!="{string(value)}"'


def match(attribute: str, pattern: str) -> str:
    return f'{label(attribute)}=~"{pattern}"'


def any_of(attribute: str, values: Iterable[str]) -> str:
    return match(attribute, "|".join(values))


def sel(spec: MetricSpec, *matchers: str, suffix: str = "") -> str:
    """A vector selector of ``spec`` with ``matchers`` (bare name without matchers)."""
    name = series(spec, suffix)
    return f"{name}{{{', '.join(matchers)}}}" if matchers else name


def by(*attributes: str) -> str:
    """A grouping clause's labels; :data:`SERVICE_NAME` follows :data:`JOB` wherever ``job`` is kept (it is a
    function of the same resource: no more series, and the trace links need it)."""
    labels = [label(a) for a in attributes]
    if JOB in labels and SERVICE_NAME not in labels:
        labels.insert(labels.index(JOB) + 1, SERVICE_NAME)
    return ", ".join(labels)


def rate(selector: str, window: str = "$__rate_interval") -> str:
    return f"rate({selector}[{window}])"


def increase(selector: str, window: str = "$__rate_interval") -> str:
    return f"increase({selector}[{window}])"


#: How long a series may go unseen and still be the same series: a failed scrape marks every series of the
#: target stale, and a collector restart (or an app's export stalled past the collector's metric_expiration)
#: hides them until the next export; a series seen within this before a step continues there, it is not new.
#: Prometheus' default lookback, what a plain selector bridges when no stale marker cuts it.
GAP = "5m"


def latest(selector: str, step: str, offset: str = "") -> str:
    """The last sample of each series of ``selector`` at the evaluation (``offset`` before it), looking back
    max(``step``, :data:`GAP`), stale markers ignored: every sample a step of :func:`events` follows (a
    ``step`` past the lookback, a long dashboard range's, must not skip the last samples of a series that
    ended between two steps), and a series seen within :data:`GAP` is there."""
    at = f" offset {offset}" if offset else ""
    if step.startswith("$"):  # a Grafana interval: the longer of the two, as PromQL cannot compare durations
        return f"(last_over_time({selector}[{step}]{at}) or last_over_time({selector}[{GAP}]{at}))"
    lookback = step if _milliseconds(step) > _milliseconds(GAP) else GAP
    return f"last_over_time({selector}[{lookback}]{at})"


def events(selector: str, window: str = "$__rate_interval", step: str = "$__interval") -> str:
    """Per series, how much counter ``selector`` grew in the trailing ``window``: the sum, every ``step``,
    of its growth since the step before, or of its whole value where it had none a step before.

    A counter series appears with its first event (the SDK creates it on the first ``add``) and starts
    from 0 again when its process restarts. ``increase()`` cannot see the value a series appears with (a
    single fallback, breaker transition or anomaly would be invisible); counting the whole value of a
    series absent ``window`` ago instead (the expression before) forgot everything before a restart of
    a process that kept its ``service.instance.id`` (a pod name: the same series) within the window.
    Here a new series counts whole, a drop (a restart) counts the new value, and the steps between
    telescope to the growth, with no extrapolation. ``step`` should be at least the scrape interval
    (a finer one only repeats samples); a reset is seen when the value drops between two steps.

    Each step reads the series' last sample (:func:`latest`), not the instant value: one failed scrape (every
    series stale for a scrape) or a collector restart made each series absent at a step, and the next step
    counted its whole value again: a process' lifetime of tasks in a 5-minute count, an anomaly of hours ago
    firing ShannonAnomalyDetected. And a step longer than a finished series stayed visible (a batch process'
    series, 2 minutes on the collector after its last export, at a day's or a week's dashboard range) missed
    its last growth, or the whole series. So a series is new only where it had no sample within :data:`GAP`
    (a process restarted under its ``service.instance.id`` within that and past its old value by its first
    step is counted from the old value).
    """
    return f"sum_over_time(\n({step_events(selector, step)})[{window}:{step}]\n)"


def step_events(selector: str, step: str = "$__interval") -> str:
    """Per series, how much counter ``selector`` grew since the step before: one step of :func:`events`.

    Evaluated at each step of a range query whose step is ``step`` (Grafana's ``$__interval`` is the step
    of the query), each point counts only the growth in its own step (the step before excluded), so the
    points tile the range: the bars of a bar chart sum to the count of the range (give or take the growth
    of one step before its first bar), where the growth of a trailing ``$__rate_interval`` at each step
    counted every event in each of the 4-5 bars whose window held it.
    """
    now, before = latest(selector, step), latest(selector, step, step)
    growth = f"({now} - {before}) >= 0"
    # "* 1" drops the name last_over_time keeps: a series' steps with and without it were two series to sum
    return f"({growth}) or ({now} * 1 and on () ({scraping(step)}))"


def scraping(step: str) -> str:
    """Non-empty where Prometheus had a target up in the :data:`GAP` before ``step`` ago, or scrapes
    nothing at all (``up`` absent: series pushed to it): where a series seen for the first time is new.

    A Prometheus started on an empty store (or back after every target was down past the gap) sees every
    series for the first time; counted whole there, a process' lifetime of tasks, failures and anomalies was
    the first window's: ShannonAnomalyDetected fired at once for anomalies of days before, the task and retry
    alerts judged lifetime ratios. What a series counted before Prometheus saw it is not counted.
    """
    return f"max_over_time(up[{GAP}] offset {step}) == 1 or absent(up)"


def sum_by(attributes: Iterable[str], expr: str) -> str:
    grouping = by(*attributes)
    return f"sum by ({grouping}) ({expr})" if grouping else f"sum({expr})"


def grown(selector: str, window: str) -> str:
    """How much counter ``selector`` grew over ``window``: :func:`events` over a dashboard's window
    (``$__rate_interval``, ``$__range``: the values a series appears with count, which ``rate()``
    cannot see, and a batch process that exported once would show nothing), ``rate()`` over a literal
    window (a step-less query of the user's own; the bundled rules count with ``_rules.events``, which
    knows their step)."""
    return events(selector, window) if window.startswith("$") else rate(selector, window)


def per_second(counted: str) -> str:
    """``counted`` (growth in ``$__rate_interval``, see :func:`events`) per second.

    :func:`events` sums the growth of every ``$__interval`` step its subquery evaluates in the window:
    aligned to the step, that covers more than ``$__rate_interval`` (a closed window holds one step
    more; ``$__rate_interval`` = ``$__interval`` + scrape holds two steps of growth). Dividing by
    ``$__rate_interval`` showed 1.25x the real rate on a 1-hour range (1.6x on a day, 2x on a week),
    so the growth is divided by the span of the steps the same subquery counts.
    """
    steps = "count_over_time(vector(1)[$__rate_interval:$__interval])"
    return f"{counted}\n/ scalar({steps} * $__interval_ms / 1000)"


def quantile(
    q: float, spec: MetricSpec, *matchers: str, by_: Iterable[str] = (), window: str = "$__rate_interval",
) -> str:
    """``histogram_quantile`` over the classic ``_bucket`` series of ``spec`` (counted by :func:`grown`)."""
    bucket = grown(sel(spec, *matchers, suffix="_bucket"), window)
    return f"histogram_quantile({q}, {sum_by(('le', *by_), bucket)})"


def whole_quantile(
    q: float, spec: MetricSpec, *matchers: str, by_: Iterable[str] = (), window: str = "$__rate_interval",
) -> str:
    """:func:`quantile` of a histogram of whole numbers (attempts), rounded up to one.

    ``histogram_quantile`` interpolates linearly inside a bucket and takes 0 as the first bucket's lower
    bound, so calls that all took exactly 1 attempt (bucket ``le="1"``) read p99 0.99, and all taking 2
    (``(1, 2]``) read 1.99. A bucket ``(k - 1, k]`` holds only ``k``: its quantile is ``k``, which ``ceil``
    gives back; inside a wider bucket it is a whole number of that bucket, as the observations are.
    """
    return f"ceil({quantile(q, spec, *matchers, by_=by_, window=window)})"


def mean(spec: MetricSpec, *matchers: str, by_: Iterable[str] = (), window: str = "$__rate_interval") -> str:
    """Mean observation of histogram ``spec``: growth of ``_sum`` over growth of ``_count``; no value
    (not 0 / 0 = NaN) for a window without observations."""
    grouping = tuple(by_)
    total = sum_by(grouping, grown(sel(spec, *matchers, suffix="_sum"), window))
    count = sum_by(grouping, grown(sel(spec, *matchers, suffix="_count"), window))
    return f"{total}\n/\n({count} > 0)"


def with_service(expr: str) -> str:
    """``expr`` with a :data:`SERVICE` label: the series' :data:`SERVICE_NAME`, else its ``job`` cut at the last ``/``.

    Jaeger knows a service by ``service.name`` alone. ``job`` is ``service.namespace/service.name``, so cutting it
    named the wrong service for a ``service.name`` holding a ``/`` (``payments/api`` searched ``api``); it is only
    the fallback for series without ``service_name`` (a collector that does not copy it). ``expr`` must keep
    ``service_name`` (see :func:`keeps`; :func:`by` keeps it beside ``job``).
    """
    from_job = f'label_replace(\n{expr},\n"{SERVICE}", "$1", "{JOB}", "(?:.*/)?(.+)")'
    return f'label_replace(\n{from_job},\n"{SERVICE}", "$1", "{SERVICE_NAME}", "(.+)")'


# ----------------------------------------------------------------------------- analysis
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_NOT_NAMES = re.compile(
    r"\{[^}]*\}|\[[^\]]*\]|\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"
)
_IDENTIFIER = re.compile(r"(?<![\w.:$])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()")
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"})
# Grafana variable names start with a letter or "_"; ``$1`` is a regex group (label_replace).
_VARIABLE = re.compile(r"\$(?:\{([A-Za-z_]\w*)(?::\w+)?\}|([A-Za-z_]\w*))")

#: Values standing in for Grafana's variables when a dashboard query is run outside Grafana.
GRAFANA_DEFAULTS: Mapping[str, str] = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "1h",
}


def _milliseconds(duration: str) -> int:
    units = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000, "y": 31_536_000_000}
    return sum(int(n) * units[unit] for n, unit in re.findall(r"(\d+)(ms|[smhdwy])", duration))


def metric_names(expr: str) -> set[str]:
    """Series names selected by ``expr``: identifiers outside strings, matchers, ranges and grouping
    clauses that are neither function calls nor keywords."""
    bare = _NOT_NAMES.sub(" ", _STRING.sub('""', expr))
    return {m.group(1) for m in _IDENTIFIER.finditer(bare) if m.group(1).lower() not in _KEYWORDS}


_DERIVED = re.compile(
    r'^label_replace\((?P<inner>.*),\s*"(?P<dst>\w+)",\s*"[^"]*",\s*"(?P<src>\w+)",\s*"[^"]*"\)$', re.DOTALL,
)
# Aggregation operators that drop labels (topk/bottomk/limitk select series and keep theirs).
_AGGREGATION = re.compile(
    r"\b(?:sum|min|max|avg|group|count|count_values|stddev|stdvar|quantile)\s*"
    r"(?:(?P<kind>by|without)\s*\((?P<labels>[^)]*)\))?\s*\("
)


def keeps(expr: str, name: str) -> bool:
    """Whether label ``name`` of the selected series survives into the result of ``expr``.

    Conservative: every aggregation in ``expr`` must keep ``name`` (``by`` listing it, ``without``
    not listing it); a label an outermost ``label_replace`` writes survives when its source does.
    """
    derived = _DERIVED.match(expr.strip())
    if derived is not None:
        inner = derived.group("inner")
        return keeps(inner, derived.group("src")) if derived.group("dst") == name else keeps(inner, name)
    for m in _AGGREGATION.finditer(_STRING.sub('""', expr)):
        listed = {part.strip() for part in (m.group("labels") or "").split(",")}
        kind = m.group("kind")
        if kind is None or (kind == "by") != (name in listed):
            return False
    return True


def concrete(expr: str, values: Mapping[str, str] | None = None) -> str:
    """``expr`` with Grafana variables replaced, ready for Prometheus or ``promtool``.

    ``$__rate_interval``, ``$__interval`` and ``$__range`` get ``1m``, ``15s`` and ``1h`` (their ``_ms`` forms
    the same in milliseconds), every other variable (``$job``, ``$wave``...) gets ``.+`` - the "All" value of
    the dashboards' variables - unless ``values`` names it.
    """
    chosen = {**GRAFANA_DEFAULTS, **(values or {})}
    for name in ("__rate_interval", "__interval", "__range"):  # Grafana's _ms forms of the same values
        chosen.setdefault(f"{name}_ms", str(_milliseconds(chosen[name])))

    def replace(m: re.Match[str]) -> str:
        return chosen.get(m.group(1) or m.group(2), ".+")

    return _VARIABLE.sub(replace, expr)
