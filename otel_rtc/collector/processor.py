"""Rotel metrics processor: true window rates, peaks and traffic load inside a collector.

Rotel (``rotel-agent start --otlp-with-metrics-processor <this file>``) calls
:func:`process_metrics` for every ``ResourceMetrics`` it receives, before exporting it
onward. This module feeds the same pure core as the in-process processor
(:mod:`otel_rtc.core.rates`, :mod:`otel_rtc.core.load` through
:mod:`otel_rtc.core.derived`) and appends the derived gauges to the ``ResourceMetrics``
under the scope ``otel_rtc.collector``, with the same names, units and attributes
(``docs/processor.md``). Everything else passes through unchanged.

* **State is per series** and lives in this module for the life of the collector
  process: every point of a series must reach the same collector instance (sticky
  routing by resource/stream in a scaled-out tier).
* **Series identity** is the resource attributes + metric name + point attributes.
  Traffic load is computed per resource (the rooms as one sender sees them).
* **Timestamps come from the data**: rates are evaluated at each series' last point,
  so replayed or delayed data gives the same numbers as live data.
* **Never raises**: a problem is counted per resource and exported with it as
  ``otel_rtc.telemetry.dropped`` / ``otel_rtc.internal.errors`` (component
  ``collector_processor``). Even a failed import of ``otel_rtc`` leaves data flowing.
* **Configuration**: ``OTEL_RTC_*`` environment variables of the collector process
  (:func:`otel_rtc.core.derived.settings_from_env`).

Only the stdlib, otel_rtc's pure core and ``rotel_sdk`` (provided by the agent) are
imported; ``rotel_sdk`` lazily, so this module can be unit-tested with test doubles.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Hashable
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Any

_logger = logging.getLogger("otel_rtc")

try:  # the agent's interpreter uses the system sys.path: reach the package next to us
    import otel_rtc  # noqa: F401
except Exception:  # pragma: no cover - depends on how the agent was started
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

_IMPORT_ERROR: BaseException | None = None
try:
    from otel_rtc.core.derived import (
        Attrs,
        DerivedGroups,
        LoadDeriver,
        ProcessorSettings,
        RateDeriver,
        is_rejection,
        settings_from_env,
    )
except Exception as _exc:  # pragma: no cover - keep the collector alive, pass data through
    _IMPORT_ERROR = _exc

COMPONENT = "collector_processor"
SCOPE_NAME = "otel_rtc.collector"
DROPPED = "otel_rtc.telemetry.dropped"
ERRORS = "otel_rtc.internal.errors"
MAX_RESOURCES = 10_000
"""Resources with load or problem state kept at once; the least recently seen go first."""

_CUMULATIVE = 2  # OTLP AggregationTemporality values
_DELTA = 1


class _Sdk:
    """The ``rotel_sdk`` types, imported on first use."""

    def __init__(self) -> None:
        from rotel_sdk.open_telemetry.common.v1 import AnyValue, InstrumentationScope, KeyValue
        from rotel_sdk.open_telemetry.metrics.v1 import (
            AggregationTemporality,
            Gauge,
            Metric,
            MetricData,
            NumberDataPoint,
            NumberDataPointValue,
            ScopeMetrics,
            Sum,
        )

        self.AnyValue = AnyValue
        self.KeyValue = KeyValue
        self.InstrumentationScope = InstrumentationScope
        self.AggregationTemporality = AggregationTemporality
        self.Gauge = Gauge
        self.Metric = Metric
        self.MetricData = MetricData
        self.NumberDataPoint = NumberDataPoint
        self.NumberDataPointValue = NumberDataPointValue
        self.ScopeMetrics = ScopeMetrics
        self.Sum = Sum

        def generic(k: str, v: object) -> Any:
            return KeyValue(k, AnyValue(v))

        # KeyValue's typed constructors build a KeyValue in one call across pyo3, about
        # twice as fast as KeyValue(k, AnyValue(v)); same result.
        self.kv_by_type = {t: getattr(KeyValue, f"new_{n}_value", generic) for t, n in (
            (str, "string"), (bool, "bool"), (int, "int"), (float, "double"))}
        self.kv_generic = generic


class _State:
    """Everything this module remembers between calls."""

    def __init__(self, settings: ProcessorSettings) -> None:
        self.settings = settings
        self.start_ns = time.time_ns()
        self.hwm_ns = 0  # newest data time seen (bounded by the wall clock)
        self.current: Hashable = ()
        self.rates = RateDeriver(settings.rate, settings.include, clock=self.clock,
                                 on_drop=self._on_drop)
        self.loads: dict[Hashable, LoadDeriver] = {}
        self.problems: dict[Hashable, dict[tuple[str, str, str], int]] = {}
        self.emitted: dict[Hashable, int] = {}  # series/resource key -> last emission time
        self.emit_ns = int(settings.emit_interval_s * 1_000_000_000)
        self.calls = 0
        # (resource key, name, attrs) -> [that tuple, the load key]: the canonical
        # series key, and the load calculator's key (resolved on first use).
        self.keys: dict[Hashable, list[Any]] = {}

    def due(self, key: Hashable, t: int) -> bool:
        """Whether ``key``'s derived points are due at data time ``t``."""
        last = self.emitted.get(key)
        return last is None or not 0 <= t - last < self.emit_ns

    def emitted_at(self, key: Hashable, t: int) -> None:
        """``key``'s derived points went out at data time ``t``.

        Marked only when something was emitted: a series' first point is often only a
        baseline (no rate yet), and must not hold back its first rate for a whole
        emission interval.
        """
        self.emitted[key] = t

    def clock(self) -> int:
        # Data time, so that replayed data ages like live data; never beyond the wall
        # clock, so one sender's fast clock cannot evict everyone else's series.
        wall = time.time_ns()
        return min(self.hwm_ns, wall) if self.hwm_ns else wall

    def _on_drop(self, reason: str) -> None:
        if is_rejection(reason):
            self.problem(self.current, DROPPED, COMPONENT, reason)

    def problem(self, rkey: Hashable, metric: str, component: str, reason: str) -> None:
        d = self.problems.get(rkey)
        if d is None:
            if len(self.problems) >= MAX_RESOURCES:
                self.problems.pop(next(iter(self.problems)))
            d = self.problems[rkey] = {}
        k = (metric, component, reason)
        d[k] = d.get(k, 0) + 1
        _totals[(metric, reason)] = _totals.get((metric, reason), 0) + 1

    def load_for(self, rkey: Hashable) -> LoadDeriver:
        ld = self.loads.pop(rkey, None)
        if ld is None:
            if len(self.loads) >= MAX_RESOURCES:
                self.loads.pop(next(iter(self.loads)))
            ld = LoadDeriver(self.settings.load, clock=self.clock, on_drop=self._on_drop)
        self.loads[rkey] = ld  # re-inserted: dict order is least recently used first
        return ld


_lock = threading.Lock()
_state: _State | None = None
_sdk: _Sdk | None = None
_totals: dict[tuple[str, str], int] = {}


def _get_state() -> _State:
    global _state
    if _state is None:
        _state = _State(settings_from_env(os.environ))
    return _state


def _get_sdk() -> _Sdk:
    global _sdk
    if _sdk is None:
        _sdk = _Sdk()
    return _sdk


def _reset_for_tests(environ: dict[str, str] | None = None) -> None:
    """Forget all state (and the cached ``rotel_sdk`` types); re-read the environment."""
    global _state, _sdk
    with _lock:
        _sdk = None
        _totals.clear()
        _state = _State(settings_from_env(os.environ if environ is None else environ))


def problem_counts() -> dict[tuple[str, str], int]:
    """Totals of problems since start: ``{(metric, reason or error type): count}``."""
    with _lock:
        return dict(_totals)


# -- entry point -----------------------------------------------------------------------

def process_metrics(resource_metrics: Any) -> None:
    """Rotel's hook: add derived metrics to one ``ResourceMetrics`` in place. Never raises."""
    try:
        if _IMPORT_ERROR is not None:
            _log_once("import", _IMPORT_ERROR)
            return
        with _lock:
            st = _get_state()
            st.calls += 1
            rkey: Hashable = ()
            try:
                rkey = _resource_key(resource_metrics)
                st.current = rkey
                _process(st, _get_sdk(), resource_metrics, rkey)
            except Exception as exc:
                st.problem(rkey, ERRORS, COMPONENT, type(exc).__qualname__)
                _log_once(type(exc).__qualname__, exc)
                try:
                    _emit_problems(st, _get_sdk(), resource_metrics, rkey)
                except Exception:  # nothing more we can do; the data still flows
                    pass
            finally:
                st.current = ()
    except Exception:  # last resort: never break the collector's pipeline
        pass


_logged: set[str] = set()


def _log_once(key: str, exc: BaseException) -> None:
    if key not in _logged:
        _logged.add(key)
        _logger.warning("otel_rtc collector processor: %s: %s (counted in %s)",
                        type(exc).__qualname__, exc, ERRORS)


# -- conversion ------------------------------------------------------------------------

def _plain(av: Any) -> object:
    v = getattr(av, "value", None) if av is not None else None
    if v is None or isinstance(v, (str, bool, int, float)):
        return v
    return str(v)


_KEY_AND_VALUE = attrgetter("key", "value.value")
_PLAIN_TYPES = frozenset({str, bool, int, float})
_first = itemgetter(0)
_NUMBER_TYPES = frozenset({int, float})


def _attrs(kvs: Any) -> Attrs:
    """Sorted ``(key, plain value)`` pairs of ``rotel_sdk`` attributes.

    Every ``kv.key`` / ``kv.value`` read crosses into Rust (~0.1-0.3 µs each), so they
    are read once each, through C-level ``attrgetter``.
    """
    if not kvs:
        return ()
    try:
        items = list(map(_KEY_AND_VALUE, kvs))
    except AttributeError:  # an attribute without a value
        items = [(kv.key, _plain(kv.value)) for kv in kvs]
    else:
        if not {type(v) for _k, v in items} <= _PLAIN_TYPES:
            items = [(k, v if v is None or isinstance(v, (str, bool, int, float)) else str(v))
                     for k, v in items]
    items.sort(key=_first)
    return tuple(items)


def _resource_key(rm: Any) -> Hashable:
    res = rm.resource
    return _attrs(res.attributes) if res is not None else ()


def _value(v: Any) -> float | None:
    if v is None:
        return None
    x = v[0]
    return x if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def _temporality(t: Any) -> int:
    try:
        return int(t)
    except Exception:
        name = str(t).lower()
        return _CUMULATIVE if "cumulative" in name else _DELTA if "delta" in name else 0


def _process(st: _State, sdk: _Sdk, rm: Any, rkey: Hashable) -> None:
    s = st.settings
    rates = st.rates if s.rates_enabled else None
    load: LoadDeriver | None = None
    touched: dict[Hashable, int] = {}
    load_now = 0
    md = sdk.MetricData
    keys = st.keys
    max_keys = 2 * s.rate.max_series + 1024
    meta = st.rates._meta  # same-package access: RateDeriver's series names
    for sm in list(rm.scope_metrics or ()):
        scope = sm.scope
        if scope is not None and scope.name == SCOPE_NAME:
            continue  # our own output (e.g. a second collector in a chain)
        for m in list(sm.metrics or ()):
            name = m.name
            want_rate = rates is not None and rates.selects(name)
            want_load = s.load_enabled and LoadDeriver.selects(name)
            if not (want_rate or want_load):
                continue
            data = m.data
            hist = False
            if isinstance(data, md.Sum):
                inner = data[0]
                if not inner.is_monotonic:
                    continue
            elif isinstance(data, md.Histogram):
                inner = data[0]
                hist = True
                want_load = False
            else:
                continue
            temp = _temporality(inner.aggregation_temporality)
            if temp not in (_CUMULATIVE, _DELTA):
                st._on_drop("invalid")
                continue
            cumulative = temp == _CUMULATIVE
            unit = m.unit or ""
            desc = m.description or ""
            observe = rates.engine.observe if want_rate and rates is not None else None
            for p in list(inner.data_points or ()):
                t = p.time_unix_nano
                if hist:
                    v = p.count
                else:
                    v = p.value
                    if v is not None:
                        v = v[0]
                        if type(v) not in _NUMBER_TYPES:
                            v = _value((v,))
                if v is None or not isinstance(t, int):
                    st._on_drop("invalid")
                    continue
                if t > st.hwm_ns:
                    st.hwm_ns = t
                start = p.start_time_unix_nano or None
                a = _attrs(p.attributes)
                # One canonical key object per series: every later dict operation on it
                # (engine, names, emission times) then matches by identity instead of
                # comparing freshly converted strings.
                k = (rkey, name, a)
                e = keys.get(k)
                if e is None:
                    if len(keys) >= max_keys:
                        keys.clear()
                    e = keys[k] = [k, None]
                key = e[0]
                if observe is not None:
                    # RateDeriver.observe, inlined (one Python call less per point).
                    if observe(key, v, t, start_ns=start, cumulative=cumulative):
                        if key not in meta:
                            meta[key] = (name, unit, desc, key[2], hist)
                        if t >= touched.get(key, 0):
                            touched[key] = t
                if want_load:
                    if load is None:
                        load = st.load_for(rkey)
                    lkey = e[1]
                    if lkey is None:
                        lkey = e[1] = load.series_key(name, dict(a))
                    if load.observe_key(lkey, v, t, start, cumulative) and t > load_now:
                        load_now = t
    groups: DerivedGroups = {}
    now = st.clock()
    if st.calls % 64 == 0:
        _evict(st, now)
    if rates is not None and touched:
        for k, t in touched.items():
            if st.due(k, t) and rates.derive_into(groups, (k,), now, touched):
                st.emitted_at(k, t)
    if load is not None and load_now and st.due(("load", rkey), load_now):
        if load.derive_into(groups, load_now):
            st.emitted_at(("load", rkey), load_now)
    metrics = _to_metrics(sdk, groups) if groups else []
    metrics.extend(_problem_metrics(st, sdk, rkey))
    if metrics:
        _append_scope(sdk, rm, metrics)


def _evict(st: _State, now: int) -> None:
    st.rates.evict(now)
    for ld in st.loads.values():
        ld.evict(now)
    limit = now - int(st.settings.rate.stale_after_s * 1_000_000_000)
    for k in [k for k, t in st.emitted.items() if t < limit]:
        del st.emitted[k]


def _emit_problems(st: _State, sdk: _Sdk, rm: Any, rkey: Hashable) -> None:
    metrics = _problem_metrics(st, sdk, rkey)
    if metrics:
        _append_scope(sdk, rm, metrics)


def _append_scope(sdk: _Sdk, rm: Any, metrics: list[Any]) -> None:
    scope = sdk.InstrumentationScope()
    scope.name = SCOPE_NAME
    try:
        from otel_rtc.version import __version__

        scope.version = __version__
    except Exception:
        pass
    sm = sdk.ScopeMetrics()
    sm.scope = scope
    sm.metrics = metrics
    sms = list(rm.scope_metrics or ())
    sms.append(sm)
    rm.scope_metrics = sms


def _kv(sdk: _Sdk, k: str, v: object) -> Any:
    if v is None:
        v = ""
    elif not isinstance(v, (str, bool, int, float)):
        v = str(v)
    make = sdk.kv_by_type.get(type(v))
    return make(k, v) if make is not None else sdk.kv_generic(k, v)


def _to_metrics(sdk: _Sdk, groups: DerivedGroups) -> list[Any]:
    # New KeyValue objects for every point: rotel_sdk stores them by reference, so a
    # shared one mutated in place by a later processor would change every point that
    # holds it.
    by_type = sdk.kv_by_type
    out = []
    ndp, as_double = sdk.NumberDataPoint, sdk.NumberDataPointValue.AsDouble
    for name, (unit, desc, pts) in groups.items():
        dps = []
        for a, v, start, t in pts:
            dp = ndp()
            try:
                dp.attributes = [by_type[type(x)](k, x) for k, x in a]
            except KeyError:  # a value of another type (or None): the generic path
                dp.attributes = [_kv(sdk, k, x) for k, x in a]
            dp.start_time_unix_nano = start
            dp.time_unix_nano = t
            dp.value = as_double(float(v))
            dps.append(dp)
        g = sdk.Gauge()
        g.data_points = dps
        m = sdk.Metric()
        m.name = name
        m.unit = unit
        m.description = desc
        m.data = sdk.MetricData.Gauge(g)
        out.append(m)
    return out


def _problem_metrics(st: _State, sdk: _Sdk, rkey: Hashable) -> list[Any]:
    probs = st.problems.get(rkey)
    if not probs:
        return []
    now = time.time_ns()
    by_metric: dict[str, list[Any]] = {}
    for (metric, component, reason), n in sorted(probs.items()):
        dp = sdk.NumberDataPoint()
        label = "otel_rtc.drop.reason" if metric == DROPPED else "error.type"
        dp.attributes = [_kv(sdk, "otel_rtc.component", component), _kv(sdk, label, reason)]
        dp.start_time_unix_nano = st.start_ns
        dp.time_unix_nano = now
        dp.value = sdk.NumberDataPointValue.AsInt(n)
        by_metric.setdefault(metric, []).append(dp)
    out = []
    for metric, dps in by_metric.items():
        s = sdk.Sum()
        s.aggregation_temporality = sdk.AggregationTemporality.Cumulative
        s.is_monotonic = True
        s.data_points = dps
        m = sdk.Metric()
        m.name = metric
        m.unit = "{item}" if metric == DROPPED else "{error}"
        m.description = ("Telemetry input rejected by otel_rtc (invalid, over a cap, ...)."
                         if metric == DROPPED else
                         "Errors inside otel_rtc that were contained instead of raised.")
        m.data = sdk.MetricData.Sum(s)
        out.append(m)
    return out
