"""Rotel metrics processor: true window rates, peaks and traffic load inside a collector.

Rotel (``rotel-agent start --otlp-with-metrics-processor <this file>``) calls
:func:`process_metrics` for every ``ResourceMetrics`` it receives, before exporting it
onward. This module feeds the same pure core as the in-process processor
(:mod:`otel_rtc.core.rates`, :mod:`otel_rtc.core.load` through
:mod:`otel_rtc.core.derived`) and appends the derived gauges to the ``ResourceMetrics``
under the scope ``otel_rtc.collector``, with the same names, units and attributes
(``docs/processor.md``; the ``rotel_sdk`` objects are built by
:mod:`otel_rtc.collector.rotel_output`). Everything else passes through unchanged.

* **One engine, one pass**: each point is read once and observed once, for the rates
  and the load together (:class:`otel_rtc.core.derived.Deriver`, the same code as
  in-process). Unselected metrics are recognised by name before any attribute is read. A
  batch listing the series of the previous batch of its metric in the same order finds
  them without a lookup.
* **State is per series** and lives in this module for the life of the collector
  process: every point of a series must reach the same collector instance (sticky
  routing by resource/stream in a scaled-out tier). Series are capped in total
  (``OTEL_RTC_RATE_MAX_SERIES``, default 2,000), not per resource.
* **Series identity** is the resource attributes + metric name + point attributes.
  Traffic load is computed per resource (the rooms as one sender sees them).
* **Emission follows the data**: each batch of a resource is an emission instant for
  its series (``docs/rates.md``, "The v2 contract"): every series with new data gets
  one reading over its data since the previous one, a series missing from 2 batches in
  a row gets a final reading, and nothing is held back by a timer.
* **Never derived twice**: a resource whose batch carries the in-process processor's
  scope (``otel_rtc.rates``: the app derives its own rates) is passed through.
* **Never raises**: a problem is counted per resource and exported with it as
  ``otel_rtc.telemetry.dropped`` / ``otel_rtc.internal.errors`` (component
  ``collector_processor``). Even a failed import of ``otel_rtc`` leaves data flowing.
* **Configuration**: ``OTEL_RTC_*`` environment variables of the collector process
  (:func:`otel_rtc.core.processor_settings.settings_from_env`).

Only the stdlib, otel_rtc's pure core, :mod:`otel_rtc.collector.rotel_output` and
``rotel_sdk`` (provided by the agent) are imported; ``rotel_sdk`` lazily, so this module
can be unit-tested with test doubles.
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
    from otel_rtc.collector.rotel_output import (
        SCOPE_NAME,
        RotelSdk,
        append_scope,
        problem_metrics,
        to_metrics,
    )
    from otel_rtc.core.derived import (
        ANOMALIES,
        Attrs,
        DerivedGroups,
        Deriver,
        is_rejection,
        source_kind,
    )
    from otel_rtc.core.processor_settings import ProcessorSettings, settings_from_env
except Exception as _exc:  # pragma: no cover - keep the collector alive, pass data through
    _IMPORT_ERROR = _exc

COMPONENT = "collector_processor"
IN_PROCESS_SCOPE = "otel_rtc.rates"
"""Scope of the in-process processor's output: its resource already derives rates."""
# names.TELEMETRY_DROPPED / names.INTERNAL_ERRORS, spelled here because this module must
# name them even when importing otel_rtc failed (tests/test_collector_processor.py checks).
DROPPED = "otel_rtc.telemetry.dropped"
ERRORS = "otel_rtc.internal.errors"
MAX_RESOURCES = 2_000
"""Resources with problem counts or upstream derivation remembered at once."""


class _State:
    """Everything this module remembers between calls."""

    def __init__(self, settings: ProcessorSettings) -> None:
        self.settings = settings
        self.start_ns = time.time_ns()
        self.current: Hashable = ()
        self.deriver = Deriver(settings, clock=time.time_ns, on_anomaly=self._on_anomaly)
        # resource key -> [its series keys (an ordered set), monotonic time last seen]
        self.resources: dict[Hashable, list[Any]] = {}
        # resources whose apps derive in-process (passed through), least recent first
        self.upstream: dict[Hashable, None] = {}
        self.problems: dict[Hashable, dict[tuple[str, str, str], int]] = {}
        self.calls = 0
        # (repr(resource key), name, attributes as read) -> (series key, its tag)
        self.keys: dict[Hashable, tuple[Hashable, Any]] = {}
        # (repr(resource key), metric name) -> (the attributes as read of each point of
        # its previous batch, the (series key, tag) of each point, None until looked up)
        self.batches: dict[tuple[str, str], tuple[list[Any], list[Any]]] = {}
        self.batch_points = 0

    def _on_anomaly(self, reason: str) -> None:
        self.problem(self.current, DROPPED if is_rejection(reason) else ANOMALIES, COMPONENT,
                     reason)

    def remember_batch(self, mkey: tuple[str, str], raw: list[Any], entries: list[Any]) -> None:
        """Keep a batch's points for the next one (as many points as ``keys`` holds, at most)."""
        cap = 2 * self.settings.rate.max_series + 1024
        old = self.batches.pop(mkey, None)
        if old is not None:
            self.batch_points -= len(old[0])
        if self.batch_points + len(raw) > cap:
            self.batches.clear()
            self.batch_points = 0
        if len(raw) <= cap:
            self.batches[mkey] = (raw, entries)
            self.batch_points += len(raw)

    def problem(self, rkey: Hashable, metric: str, component: str, reason: str) -> None:
        d = self.problems.get(rkey)
        if d is None:
            if len(self.problems) >= MAX_RESOURCES:
                self.problems.pop(next(iter(self.problems)))
            d = self.problems[rkey] = {}
        k = (metric, component, reason)
        d[k] = d.get(k, 0) + 1
        _totals[(metric, reason)] = _totals.get((metric, reason), 0) + 1


_lock = threading.Lock()
_state: _State | None = None
_sdk: RotelSdk | None = None
_totals: dict[tuple[str, str], int] = {}


def _get_state() -> _State:
    global _state
    if _state is None:
        _state = _State(settings_from_env(os.environ))
    return _state


def _get_sdk() -> RotelSdk:
    global _sdk
    if _sdk is None:
        _sdk = RotelSdk()
    return _sdk


def _reset_for_tests(environ: dict[str, str] | None = None) -> None:
    """Forget all state (and the cached ``rotel_sdk`` types); re-read the environment."""
    global _state, _sdk
    with _lock:
        _sdk = None
        _totals.clear()
        _state = _State(settings_from_env(os.environ if environ is None else environ))


def problem_counts() -> dict[tuple[str, str], int]:
    """Totals since start: ``{(metric, reason or error type): count}``."""
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


def _temporality(t: Any) -> int:
    try:
        return int(t)
    except Exception:
        name = str(t).lower()
        return 2 if "cumulative" in name else 1 if "delta" in name else 0


def _process(st: _State, sdk: RotelSdk, rm: Any, rkey: Hashable) -> None:
    """Feed one batch of a resource, read its series, append what is derived."""
    sms = list(rm.scope_metrics or ())
    if rkey in st.upstream or any(sm.scope is not None and sm.scope.name == IN_PROCESS_SCOPE
                                  for sm in sms):
        # The app derives in-process: pass through, never derive the same series twice.
        _mark_upstream(st, rkey)
        _emit_problems(st, sdk, rm, rkey)
        return
    selects = st.deriver.selects
    latest = 0
    rid = repr(rkey)  # a str: hashed once per batch, not once per point
    for sm in sms:
        scope = sm.scope
        if scope is not None and scope.name == SCOPE_NAME:
            continue  # our own output (e.g. a second collector in a chain)
        for m in list(sm.metrics or ()):
            sel = selects(m.name)  # by name: unselected metrics cost one dict lookup
            if sel:
                latest = max(latest, _feed(st, sdk, m, sel, rkey, rid))
    groups: DerivedGroups = {}
    res = st.resources.get(rkey)
    if res is not None:
        # Every batch of the resource is an emission instant of its series, at its data
        # time: one without a series reads what the reading span held of it.
        res[1] = time.monotonic()
        st.deriver.derive_into(groups, latest or time.time_ns(), list(res[0]),
                               st.settings.reading_min_span_s)
    if st.calls % 64 == 0:
        _forget_idle(st)
    metrics = to_metrics(sdk, groups) if groups else []
    metrics.extend(problem_metrics(sdk, st.problems.get(rkey), st.start_ns, time.time_ns()))
    if metrics:
        append_scope(sdk, rm, metrics)


def _feed(st: _State, sdk: RotelSdk, m: Any, sel: int, rkey: Hashable, rid: str) -> int:
    """Observe every point of one selected metric; the latest accepted time (0: none)."""
    md = sdk.MetricData
    data = m.data
    is_sum = isinstance(data, md.Sum)
    is_hist = not is_sum and isinstance(data, md.Histogram)
    if not (is_sum or is_hist):
        return 0
    inner = data[0]
    kind = source_kind(is_sum, is_sum and bool(inner.is_monotonic), is_hist,
                       _temporality(inner.aggregation_temporality))
    if kind is None:
        if is_hist or inner.is_monotonic:
            st._on_anomaly("invalid")  # an unknown temporality
        return 0
    cumulative, hist = kind
    name = m.name
    unit = m.unit or ""
    desc = m.description or ""
    res = st.resources.get(rkey)
    if res is None:
        res = st.resources[rkey] = [{}, 0.0]
    series = res[0]
    observe = st.deriver.engine.observe
    pts = list(inner.data_points or ())
    # A batch that lists the same series in the same order as the previous batch of its
    # resource and metric (what an SDK's exports do) takes that batch's series entries:
    # one C-level comparison of the attributes as read (~0.1 us per point inside Rotel)
    # instead of a lookup that hashes each point's fresh attribute strings (~0.8 us).
    try:
        raw: list[Any] | None = [tuple(map(_KEY_AND_VALUE, p.attributes)) for p in pts]
    except (AttributeError, TypeError):  # e.g. an attribute without a value: point by point
        raw = None
    mkey = (rid, name)
    memo = st.batches.get(mkey)
    if memo is not None and memo[0] == raw:
        entries = memo[1]
    else:
        entries = [None] * len(pts)
        if raw is not None:
            st.remember_batch(mkey, raw, entries)
    latest = 0
    for i, p in enumerate(pts):
        t = p.time_unix_nano
        if hist:
            v = p.count
        else:
            v = p.value
            if v is not None:
                v = v[0]
        if v is None or type(v) not in _NUMBER_TYPES or not isinstance(t, int):
            st._on_anomaly("invalid")
            continue
        entry = entries[i]
        if entry is None:
            entry = entries[i] = _entry(st, rkey, rid, name, unit, desc, hist, sel,
                                        p.attributes, raw[i] if raw is not None else None)
        elif entry[1] is None:  # counted per point, as Deriver.tag() counts a new one
            st._on_anomaly("missing_attributes")
        key, tag = entry
        if tag is None:  # feeds the load only, without room, direction or media
            continue
        if observe(key, v, t, p.start_time_unix_nano or 0, cumulative, p.flags or 0, tag):
            series[key] = None
            if t > latest:
                latest = t
    return latest


def _entry(st: _State, rkey: Hashable, rid: str, name: str, unit: str, desc: str, hist: bool,
           sel: int, kvs: Any, raw: Any) -> tuple[Hashable, Any]:
    """The series key and tag of a point, found by its attributes as read (``raw``).

    A known series costs one lookup (no sort, no type checks); anything else takes
    :func:`_series`.
    """
    try:
        entry = st.keys[(rid, name, raw if raw is not None else
                         tuple(map(_KEY_AND_VALUE, kvs)))]
    except (KeyError, TypeError, AttributeError):
        return _series(st, rkey, rid, name, unit, desc, hist, sel, kvs)
    if entry[1] is None:  # counted per point, as Deriver.tag() counts a new one
        st._on_anomaly("missing_attributes")
    return entry


def _series(st: _State, rkey: Hashable, rid: str, name: str, unit: str, desc: str,
            hist: bool, sel: int, kvs: Any) -> tuple[Hashable, Any]:
    """The canonical key and the tag of a point's series, remembered by its raw attributes.

    The canonical key holds the attributes sorted by key, as plain values, so a series is
    one series whatever order its attributes come in. ``rid`` is ``repr(rkey)``.
    """
    a = _attrs(kvs)
    # A str: its hash is computed once and kept, where a nested tuple's is recomputed at
    # every lookup (three per point).
    key = repr((rkey, name, a))
    entry = (key, st.deriver.tag(name, unit, desc, a, hist, sel, rkey))
    keys = st.keys
    if len(keys) >= 2 * st.settings.rate.max_series + 1024:
        keys.clear()
    try:
        keys[(rid, name, tuple(map(_KEY_AND_VALUE, kvs)))] = entry
    except (TypeError, AttributeError):  # a value that is not hashable, or missing
        pass
    return entry


def _mark_upstream(st: _State, rkey: Hashable) -> None:
    up = st.upstream
    if rkey in up:
        return
    if len(up) >= MAX_RESOURCES:
        up.pop(next(iter(up)))
    up[rkey] = None
    res = st.resources.pop(rkey, None)
    if res is not None:  # derived here before the app's own derivation showed up
        for k in res[0]:
            st.deriver.engine.forget(k)


def _forget_idle(st: _State) -> None:
    """Forget idle resources (nothing for ``resource_idle_s``) and series that ended.

    No batch of such a resource is left to carry a reading, so data a reading span held
    back is lost with it: counted (``unread_at_idle``), exported if the resource returns.
    """
    engine = st.deriver.engine
    limit = time.monotonic() - st.settings.resource_idle_s
    for rkey in [r for r, res in st.resources.items() if res[1] < limit]:
        for k in st.resources.pop(rkey)[0]:
            if engine.forget(k):
                st.problem(rkey, DROPPED, COMPONENT, "unread_at_idle")
    # Series that ended (final reading) or were never admitted, looked for here rather
    # than after every batch: read() skips them meanwhile.
    for rkey, res in list(st.resources.items()):
        series = res[0]
        for k in [k for k in series if k not in engine]:
            del series[k]
        if not series:
            del st.resources[rkey]


def _emit_problems(st: _State, sdk: RotelSdk, rm: Any, rkey: Hashable) -> None:
    metrics = problem_metrics(sdk, st.problems.get(rkey), st.start_ns, time.time_ns())
    if metrics:
        append_scope(sdk, rm, metrics)
