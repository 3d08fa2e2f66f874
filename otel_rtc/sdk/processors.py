"""In-process metric processors: true window rates, sub-window peaks and traffic load.

:class:`WindowRateProcessor` and :class:`TrafficLoadProcessor` are
:class:`~otel_rtc.sdk.export.MetricsProcessor` s run by
:class:`~otel_rtc.sdk.export.RtcWrappingMetricExporter` on every export. They convert the SDK's
``MetricsData`` points into samples of the pure core (:mod:`otel_rtc.core.rates`,
:mod:`otel_rtc.core.load` through :mod:`otel_rtc.core.derived`) and add the derived
gauges to the batch; everything else passes through unchanged.

**Why a sampler.** An export every 60 s gives one interval per minute: the mean is exact
but no 1 s peak can be known from it. For peaks to be real, a :class:`CounterSampler`
reads the *source counters' running totals* every sub-window period (1 s by default) on a
daemon thread, off the hot path:

* A sample source is any callable returning ``(metric name, attributes, cumulative
  value, start_ns)`` rows.
  :meth:`otel_rtc.instrumentation.traffic.TrafficAccounting.snapshot` is one:
  reading it costs one short lock and a copy of the per-room totals, no SDK collection,
  no callbacks, no export. Register sources with :func:`register_sample_source` (weakly
  held) or pass them to :class:`CounterSampler`.
* Samples carry the wall-clock time they were read (the sampler thread's ``clock``), so
  each 1 s interval between two samples is a real interval: the 1 s peak is the largest
  rate between consecutive samples and can never exceed the true peak.
* At export the processor takes one more sample (so rates are current), then series fed
  by the sampler ignore the batch's points of the same series (the two have different
  start times and would read as restarts). Series without a sampler source are fed from
  the batch, at export-interval resolution: their peaks are honestly ``None`` when the
  interval is coarser than 2 x the sub-window.

The derived metrics are gauges, so they are valid under either temporality; source
points are read as cumulative or delta according to their own temporality, which is
the inner exporter's preferred one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    Metric,
    MetricsData,
    NumberDataPoint,
    Sum,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from otel_rtc.core.clock import NS_PER_S, Clock, wall_clock_ns
from otel_rtc.core.derived import (
    DEFAULT_INCLUDE,
    Attrs,
    DerivedGroups,
    LoadDeriver,
    RateDeriver,
    attrs_key,
    is_rejection,
)
from otel_rtc.core.load import TrafficLoadConfig
from otel_rtc.core.rates import RateConfig
from otel_rtc.core.sample_sources import (
    Sample,
    SampleSource,
    register_sample_source,
    registered_sources,
    unregister_sample_source,
)
from otel_rtc.instrumentation.self_telemetry import count_drop, report_error
from otel_rtc.instrumentation.traffic import TRAFFIC_METRICS
from otel_rtc.sdk.aggregation import add_scope_metrics
from otel_rtc.sdk.export import MetricsProcessor
from otel_rtc.version import __version__

__all__ = [
    "CounterSampler",
    "Sample",
    "SampleSource",
    "TrafficLoadProcessor",
    "WindowRateProcessor",
    "register_sample_source",
    "unregister_sample_source",
]

SampleCallback = Callable[[int, list[Sample]], None]

_SCOPE = InstrumentationScope("otel_rtc.rates", __version__)
_KNOWN_UNITS: dict[str, tuple[str, str]] = {n: (u, d) for n, u, d in TRAFFIC_METRICS}
"""Units of the counters sample sources report (samples carry no unit)."""

class CounterSampler:
    """Reads counter totals every ``period_s`` on a daemon thread and fans them out.

    Args:
        period_s: Sampling period; use the shortest peak sub-window.
        sources: Sources to read; ``None`` reads the global ones
            (:func:`register_sample_source`).
        clock: Time stamped on each sample (epoch ns).
        autostart: Start the thread on the first :meth:`subscribe`.

    Raises:
        ValueError: ``period_s`` is not a positive number.
    """

    def __init__(self, period_s: float = 1.0, sources: Sequence[SampleSource] | None = None,
                 *, clock: Clock = wall_clock_ns, autostart: bool = True) -> None:
        if isinstance(period_s, bool) or not isinstance(period_s, (int, float)) \
                or not period_s > 0:
            raise ValueError("period_s must be a positive number")
        self.period_s = float(period_s)
        self._own_sources = list(sources) if sources is not None else None
        self._clock = clock
        self._autostart = autostart
        self._lock = threading.Lock()
        self._sample_lock = threading.Lock()
        self._subscribers: list[SampleCallback] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_ns: int | None = None
        self.samples_taken = 0

    def add_source(self, source: SampleSource) -> None:
        """Read ``source`` too (strongly held)."""
        with self._lock:
            if self._own_sources is None:
                self._own_sources = []
            self._own_sources.append(source)

    @property
    def reads_global_sources(self) -> bool:
        """Whether this sampler reads the process-wide sources (no sources of its own)."""
        with self._lock:
            return self._own_sources is None

    def sources(self) -> list[SampleSource]:
        """Sources read on each sample."""
        with self._lock:
            own = list(self._own_sources or [])
            use_global = self._own_sources is None
        return registered_sources() if use_global else own

    def subscribe(self, callback: SampleCallback) -> None:
        """Deliver every sample to ``callback(time_ns, rows)`` (starts the thread)."""
        with self._lock:
            self._subscribers.append(callback)
        if self._autostart:
            self.start()

    def unsubscribe(self, callback: SampleCallback) -> None:
        """Stop delivering to ``callback``; stops the thread when nobody listens."""
        with self._lock:
            if callback in self._subscribers:
                self._subscribers.remove(callback)
            empty = not self._subscribers
        if empty:
            self.stop()

    def sample_now(self, min_age_ns: int = 0) -> bool:
        """Read every source once and deliver the rows; never raises.

        Args:
            min_age_ns: Skip if the previous sample is younger than this (so that two
                processors exporting together do not sample twice).

        Returns:
            Whether a sample was taken.
        """
        try:
            with self._sample_lock:
                now = self._clock()
                last = self._last_ns
                if last is not None and 0 <= now - last < min_age_ns:
                    return False
                rows: list[Sample] = []
                for src in self.sources():
                    try:
                        rows.extend(src())
                    except Exception as exc:
                        report_error("rate_sampler.source", exc)
                self._last_ns = now
                self.samples_taken += 1
                with self._lock:
                    subscribers = list(self._subscribers)
                # Delivered under the sample lock: every subscriber sees samples in order.
                for cb in subscribers:
                    try:
                        cb(now, rows)
                    except Exception as exc:
                        report_error("rate_sampler.subscriber", exc)
            return True
        except Exception as exc:
            report_error("rate_sampler", exc)
            return False

    def start(self) -> None:
        """Start the daemon thread (idempotent)."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            t = threading.Thread(target=self._run, name="otel_rtc-rate-sampler", daemon=True)
            self._thread = t
        t.start()

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self.sample_now()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread (bounded wait)."""
        self._stop.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)
        self._thread = None

    @property
    def running(self) -> bool:
        """Whether the sampling thread is alive."""
        t = self._thread
        return t is not None and t.is_alive()


# -- SDK glue ---------------------------------------------------------------------------

def _drop_cb(component: str) -> Callable[[str], None]:
    def cb(reason: str) -> None:
        if is_rejection(reason):
            count_drop(component, reason)

    return cb


_MAX_CACHED_ATTRS = 100_000
"""Attribute dicts a processor keeps for reuse between exports (cleared when full)."""


def _to_metrics(groups: DerivedGroups,
                cache: dict[int, tuple[Attrs, dict[str, Any]]] | None = None) -> list[Metric]:
    """SDK gauges of ``groups``.

    ``cache`` maps ``id(attrs)`` to ``(attrs, dict(attrs))``: the derivers hand out the
    same attribute tuple for the same series on every export, so its dict is built once.
    The entry holds the tuple itself, so its id cannot be reused while cached. The dicts
    are shared between exports; exporters only read them.
    """
    if cache is None:
        cache = {}
    elif len(cache) >= _MAX_CACHED_ATTRS:
        cache.clear()
    out = []
    ndp = NumberDataPoint
    for name, (unit, desc, pts) in groups.items():
        dps = []
        for a, v, start, t in pts:
            e = cache.get(id(a))
            if e is None or e[0] is not a:
                e = cache[id(a)] = (a, dict(a))
            dps.append(ndp(e[1], start, t, float(v)))
        out.append(Metric(name=name, description=desc, unit=unit, data=Gauge(data_points=dps)))
    return out


def _append(data: MetricsData, metrics: list[Metric]) -> MetricsData:
    return add_scope_metrics(data, _SCOPE, metrics) or data


def _iter_sources(data: MetricsData, selects: Callable[[str], bool]
                  ) -> Iterable[tuple[Metric, bool, bool]]:
    """``(metric, cumulative, histogram)`` of every selected monotonic sum / histogram."""
    if data is None:
        return
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            if sm.scope is _SCOPE:
                continue
            for m in sm.metrics:
                d = m.data
                if isinstance(d, Sum):
                    if not d.is_monotonic or not selects(m.name):
                        continue
                    yield m, d.aggregation_temporality is AggregationTemporality.CUMULATIVE, False
                elif isinstance(d, Histogram) and selects(m.name):
                    yield m, d.aggregation_temporality is AggregationTemporality.CUMULATIVE, True


class _SampledProcessor(MetricsProcessor):
    """Shared plumbing: lock, sampler subscription, batch feeding and emission."""

    component = "rate_processor"
    _engine_observe: Callable[..., bool]
    """The ``observe`` of the engine sample rows feed (set by the subclass)."""
    _selects: Callable[[str], bool]
    """Whether a source metric name is derived from (set by the subclass)."""

    def __init__(self, sampler: CounterSampler | None, clock: Clock) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._sampler = sampler
        self._sampled: set[Hashable] = set()
        # Series this pipeline exports (seen in its batches) -> data time last seen. A
        # sampler of the process-wide sources reads every registered source; only these
        # are taken from it, so another pipeline's counters never show up in this one's
        # output. A sampler given its own sources is trusted as is.
        self._exported: dict[Hashable, int] = {}
        self._gated = sampler is not None and sampler.reads_global_sources
        self._attr_dicts: dict[int, tuple[Attrs, dict[str, Any]]] = {}
        self._attr_keys: dict[tuple[tuple[str, Any], ...], Attrs] = {}
        # Sample rows resolved once: (name, id(attrs)) -> [attrs, target, engine key,
        # generation]. A source that hands out the same attributes object per series on
        # every tick (TrafficAccounting does) costs one lookup per row; the entry holds
        # the object, so its id cannot be reused while cached. ``generation`` is the
        # value of ``_generation`` when the row was last admitted (gating, ``_sampled``,
        # metadata). A row not admitted is checked again on every tick; an admitted one
        # only after an export's evictions bump ``_generation``: only they can take
        # admission away.
        self._rows: dict[tuple[str, int], list[Any]] = {}
        self._row_names: dict[str, bool] = {}
        self._generation = 0
        if sampler is not None:
            sampler.subscribe(self._on_sample)

    @property
    def sampler(self) -> CounterSampler | None:
        """The sampler feeding this processor, if any."""
        return self._sampler

    def _on_sample(self, time_ns: int, rows: list[Sample]) -> None:
        with self._lock:
            cache = self._rows
            if len(cache) > 4 * len(rows) + 64:
                cache.clear()  # a source building fresh attribute objects every tick
            names = self._row_names
            if len(names) > 1024:
                names.clear()
            selects = self._selects
            gen = self._generation
            observe = self._engine_observe
            for row in rows:
                try:
                    name, attrs, value, start_ns = row
                    wanted = names.get(name)
                    if wanted is None:
                        if not isinstance(name, str):
                            raise TypeError("metric name must be a str")
                        wanted = names[name] = bool(selects(name))
                    if not wanted:
                        continue
                    e = cache.get((name, id(attrs)))
                    if e is None or e[0] is not attrs:
                        e = cache[(name, id(attrs))] = [attrs, *self._prepare(name, attrs),
                                                        -1]
                    if e[3] == gen:
                        observe(e[2], value, time_ns, start_ns=start_ns)  # cumulative
                    elif self._feed_admitted(e[1], value, start_ns, time_ns):
                        e[3] = gen
                except Exception:  # a malformed row of some source: only it is lost
                    count_drop(self.component, "invalid_sample")

    def _prepare(self, name: str, attrs: Mapping[str, Any]) -> tuple[Any, Hashable]:
        """What feeding a sample row of a selected ``(name, attrs)`` needs.

        Returns:
            ``(target for _feed_admitted, the row's key in the processor's engine)``.
        """
        raise NotImplementedError

    def _feed_admitted(self, target: Any, value: float, start_ns: int, time_ns: int) -> bool:
        """Check admission and feed through the full path.

        Returns:
            Whether later samples of the row may go straight to the engine until the
            next generation.
        """
        raise NotImplementedError

    def _key_of(self, attrs: Mapping[str, Any]) -> Attrs:
        """``attrs_key(attrs)``, remembered by the attributes' items (samples repeat them)."""
        try:
            raw = tuple(attrs.items())
            a = self._attr_keys.get(raw)
        except TypeError:  # an unhashable value
            return attrs_key(attrs)
        if a is None:
            if len(self._attr_keys) >= _MAX_CACHED_ATTRS:
                self._attr_keys.clear()
            a = self._attr_keys[raw] = attrs_key(attrs)
        return a

    def process(self, metrics_data: MetricsData) -> MetricsData:
        """Feed the batch, then return it with the derived gauges appended."""
        try:
            s = self._sampler
            if s is not None:
                s.sample_now(min_age_ns=int(s.period_s * NS_PER_S / 10))
            with self._lock:
                self._feed_batch(metrics_data)
                groups: DerivedGroups = {}
                self._derive_into(groups, self._clock())
                metrics = _to_metrics(groups, self._attr_dicts)
            return _append(metrics_data, metrics)
        except Exception as exc:
            report_error(self.component, exc)
            return metrics_data

    def _feed_batch(self, data: MetricsData) -> int:
        raise NotImplementedError

    def _forget_unexported(self, stale_after_s: float, now: int) -> None:
        """Drop series the batches have not shown for ``stale_after_s`` (bounded state)."""
        horizon = now - int(stale_after_s * NS_PER_S)
        stale = [k for k, t in self._exported.items() if t < horizon]
        for k in stale:
            del self._exported[k]
            self._sampled.discard(k)
        self._generation += 1  # evictions of this export may have dropped admitted rows

    def _derive_into(self, groups: DerivedGroups, now: int) -> None:
        raise NotImplementedError

    def shutdown(self) -> None:
        """Stop receiving samples (the sampler stops when nobody listens)."""
        s = self._sampler
        if s is not None:
            s.unsubscribe(self._on_sample)


class WindowRateProcessor(_SampledProcessor):
    """Adds ``<name>.rate`` and ``<name>.rate.peak`` gauges for selected counters.

    Args:
        config: Windows, peaks and bounds (:class:`~otel_rtc.core.rates.RateConfig`).
        include: fnmatch patterns of source metrics (monotonic sums and histograms;
            a histogram's rate is of its count). Default: ``otel_rtc.traffic.*``.
        sampler: Feeds running totals every sub-window period (see the module doc);
            ``None`` derives from export batches only.
        clock: Evaluation time (epoch ns).
    """

    component = "rate_processor"

    def __init__(self, config: RateConfig | None = None, *,
                 include: Sequence[str] = DEFAULT_INCLUDE,
                 sampler: CounterSampler | None = None,
                 clock: Clock = wall_clock_ns) -> None:
        config = config if config is not None else RateConfig()
        if not isinstance(config, RateConfig):
            raise ValueError("config must be a RateConfig")
        if isinstance(include, str):
            raise ValueError("include must be a sequence of patterns, not a string")
        self.deriver = RateDeriver(config, include, clock=clock,
                                   on_drop=_drop_cb(self.component))
        self._engine_observe = self.deriver.engine.observe
        self._selects = self.deriver.selects
        super().__init__(sampler, clock)

    def _prepare(self, name: str, attrs: Mapping[str, Any]) -> tuple[Any, Hashable]:
        a = self._key_of(attrs)
        unit, desc = _KNOWN_UNITS.get(name, ("1", ""))
        return ((name, a), name, unit, desc, a), (name, a)

    def _feed_admitted(self, target: Any, value: float, start_ns: int, time_ns: int) -> bool:
        key, name, unit, desc, a = target
        if self._gated and key not in self._exported:
            return False
        self._sampled.add(key)
        # The full path records the series' metadata; while the generation holds, the
        # metadata stays (only evict() removes it, and it bumps the generation).
        return self.deriver.observe(key, name, unit, desc, a, value, time_ns, start_ns, True)

    def _feed_batch(self, data: MetricsData) -> int:
        latest = 0
        d = self.deriver
        for m, cumulative, hist in _iter_sources(data, d.selects):
            for p in m.data.data_points:
                a = self._key_of(p.attributes or {})
                key = (m.name, a)
                t = p.time_unix_nano
                if t > latest:
                    latest = t
                self._exported[key] = t
                if key in self._sampled:
                    continue  # the sampler is this series' authority (finer, same counter)
                v = p.count if hist else p.value
                d.observe(key, m.name, m.unit or "", m.description or "", a, v, t,
                          p.start_time_unix_nano or None, cumulative, hist)
        return latest

    def _derive_into(self, groups: DerivedGroups, now: int) -> None:
        self.deriver.evict(now)
        self._sampled.intersection_update(self.deriver._meta)
        self._forget_unexported(self.deriver.engine.config.stale_after_s, now)
        self.deriver.derive_into(groups, None, now)


class TrafficLoadProcessor(_SampledProcessor):
    """Adds ``otel_rtc.traffic.load.*`` gauges: room rates, score, top-N and shares.

    Args:
        config: Top-N, window and weights (:class:`~otel_rtc.core.load.TrafficLoadConfig`).
        sampler: As for :class:`WindowRateProcessor`.
        clock: Evaluation time (epoch ns).
    """

    component = "traffic_load_processor"

    def __init__(self, config: TrafficLoadConfig | None = None, *,
                 sampler: CounterSampler | None = None,
                 clock: Clock = wall_clock_ns) -> None:
        config = config if config is not None else TrafficLoadConfig()
        if not isinstance(config, TrafficLoadConfig):
            raise ValueError("config must be a TrafficLoadConfig")
        self.deriver = LoadDeriver(config, clock=clock, on_drop=_drop_cb(self.component))
        self._engine_observe = self.deriver.calc.engine.observe
        self._selects = self.deriver.selects
        super().__init__(sampler, clock)

    def _prepare(self, name: str, attrs: Mapping[str, Any]) -> tuple[Any, Hashable]:
        target = ((name, self._key_of(attrs)), self.deriver.series_key(name, attrs))
        return target, target[1]

    def _feed_admitted(self, target: Any, value: float, start_ns: int, time_ns: int) -> bool:
        key, series_key = target
        if self._gated and key not in self._exported:
            return False
        self._sampled.add(key)
        return self.deriver.observe_key(series_key, value, time_ns, start_ns, True)

    def _feed_batch(self, data: MetricsData) -> int:
        latest = 0
        for m, cumulative, hist in _iter_sources(data, self.deriver.selects):
            if hist:
                continue
            for p in m.data.data_points:
                t = p.time_unix_nano
                if t > latest:
                    latest = t
                attrs = p.attributes or {}
                key = (m.name, self._key_of(attrs))
                self._exported[key] = t
                if key in self._sampled:
                    continue
                self.deriver.observe(m.name, attrs, p.value, t,
                                     p.start_time_unix_nano or None, cumulative)
        return latest

    def _derive_into(self, groups: DerivedGroups, now: int) -> None:
        self.deriver.evict(now)
        self._forget_unexported(self.deriver.config.rate.stale_after_s, now)
        self.deriver.derive_into(groups, now)
