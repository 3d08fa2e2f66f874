"""In-process metric processors: true window rates, sub-window peaks and traffic load.

:class:`WindowRateProcessor` and :class:`TrafficLoadProcessor` are
:class:`~otel_rtc.sdk.export.MetricsProcessor` s run by
:class:`~otel_rtc.sdk.export.RtcWrappingMetricExporter` on every export. They convert the SDK's
``MetricsData`` points into samples of the pure core (:mod:`otel_rtc.core.rates`,
:mod:`otel_rtc.core.load` through :mod:`otel_rtc.core.derived`) and add the derived
gauges to the batch; everything else passes through unchanged.

**Peaks need samples.** A processor given a
:class:`~otel_rtc.sdk.sampler.CounterSampler` also takes the sources' running totals every
sub-window period (1 s by default), so its peaks come from real short intervals:

* At export the processor takes one more sample (so rates are current), then series fed
  by the sampler ignore the batch's points of the same series (the two have different
  start times and would read as restarts). Series without a sampler source are fed from
  the batch, at export-interval resolution: their peaks are honestly absent when the
  interval is coarser than 2 x the sub-window.
* Each export is one emission instant of the contract in ``docs/rates.md``: every
  series with new data gets one reading over its data since the previous export; a
  series silent at 2 exports in a row gets a final reading and is forgotten.

One :class:`~otel_rtc.core.derived.Deriver` (one engine) serves the rates and the
traffic load: every source point and every sample row is observed once.

The derived metrics are gauges, so they are valid under either temporality; source
points are read as cumulative or delta according to their own temporality, which is
the inner exporter's preferred one.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Mapping, Sequence
from itertools import compress
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

from otel_rtc.core import names
from otel_rtc.core.clock import NS_PER_S, Clock, wall_clock_ns
from otel_rtc.core.derived import (
    ANOMALIES,
    ANOMALIES_DESC,
    ANOMALIES_UNIT,
    SERIES,
    SERIES_DESC,
    Attrs,
    DerivedGroups,
    Deriver,
    attrs_key,
    is_rejection,
    source_kind,
)
from otel_rtc.core.load import TrafficLoadConfig
from otel_rtc.core.processor_settings import DEFAULT_INCLUDE, ProcessorSettings
from otel_rtc.core.rates import RateConfig
from otel_rtc.core.sample_sources import SampleColumns
from otel_rtc.instrumentation.self_telemetry import count_drop, report_error
from otel_rtc.instrumentation.traffic import TRAFFIC_METRICS
from otel_rtc.sdk.aggregation import add_scope_metrics
from otel_rtc.sdk.export import MetricsProcessor
from otel_rtc.sdk.gauges import MAX_CACHED_ATTRS, derived_gauges
from otel_rtc.sdk.sampler import CounterSampler
from otel_rtc.version import __version__

__all__ = ["TrafficLoadProcessor", "WindowRateProcessor"]

_SCOPE = InstrumentationScope(names.RATES_SCOPE, __version__)
_KNOWN_UNITS: dict[str, tuple[str, str]] = {n: (u, d) for n, u, d in TRAFFIC_METRICS}
"""Units of the counters sample sources report (samples carry no unit)."""


def _temporality(t: AggregationTemporality) -> int:
    return 2 if t is AggregationTemporality.CUMULATIVE else 1


class _Layout:
    """How the sample sources' columns map onto engine series (see :class:`SampleColumns`).

    Kept while every source hands out the same ``names``, ``attrs`` and ``starts``
    objects and no export changed which series are admitted: a tick is then one column
    update of the engine.
    """

    __slots__ = ("clean", "generation", "keys", "parts", "starts", "tags")

    def __init__(self, generation: int) -> None:
        self.generation = generation
        self.clean = True  # False: some row was malformed; resolve (and count) again
        self.keys: list[Hashable] = []  # the engine series fed, in order
        self.tags: list[Any] = []
        self.starts: list[int] = []
        # Per well-formed source: (names, attrs, starts, mask of the rows fed).
        self.parts: list[tuple[Any, Any, Any, list[bool]]] = []

    def add(self, cols: SampleColumns, mask: list[bool]) -> None:
        self.parts.append((cols[0], cols[1], cols[3], mask))
        self.starts.extend(compress(cols[3], mask))

    def fits(self, samples: list[SampleColumns], generation: int) -> bool:
        """Whether ``samples`` hold the same series as when this layout was resolved."""
        if not self.clean or generation != self.generation or len(samples) != len(
                self.parts):
            return False
        try:
            return all(c[0] is names and c[1] is attrs and c[3] is starts
                       and len(c[2]) == len(mask)
                       for c, (names, attrs, starts, mask) in zip(samples, self.parts,
                                                                  strict=True))
        except Exception:  # a source that now returns something else
            return False

    def values(self, samples: list[SampleColumns]) -> list[float]:
        """The values of the rows fed, in the order of ``keys``."""
        out: list[float] = []
        for cols, part in zip(samples, self.parts, strict=True):
            out.extend(compress(cols[2], part[3]))
        return out


class _DerivedProcessor(MetricsProcessor):
    """Rates and traffic load from one :class:`~otel_rtc.core.derived.Deriver`."""

    component = "rate_processor"

    def __init__(self, settings: ProcessorSettings, sampler: CounterSampler | None,
                 clock: Clock) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._start_ns = clock()
        self.deriver = Deriver(settings, clock=clock, on_anomaly=self._on_anomaly)
        self._sampler = sampler
        self._quiet = settings.rate.quiet_intervals
        self._exports = 0
        # Series fed by the sampler: the batch's points of the same series are skipped
        # (the sampler is finer and reads the same counter).
        self._sampled: set[Hashable] = set()
        # Series this pipeline exports (seen in its batches) -> export number last seen.
        # A sampler of the process-wide sources reads every registered source; only these
        # are taken from it, so another pipeline's counters never show up in this one's
        # output. A sampler given its own sources is trusted as is.
        self._exported: dict[Hashable, int] = {}
        self._gated = sampler is not None and sampler.reads_global_sources
        self._attr_dicts: dict[int, tuple[Attrs, dict[str, Any]]] = {}
        self._attr_keys: dict[tuple[tuple[str, Any], ...], Attrs] = {}
        # Sample rows resolved once: (name, id(attrs)) -> [attrs, engine key, tag,
        # generation]. When a layout is resolved, a row whose source hands out the same
        # attributes object again (TrafficAccounting does) costs one lookup; the entry
        # holds the object, so its id cannot be reused while cached. ``generation`` is
        # the value of ``_generation`` when the row was last admitted (gating).
        # Admission changes only when an export's bookkeeping bumps ``_generation``,
        # which resolves the layout again: rows not admitted are checked again then (and
        # at any other resolution), admitted ones only after a bump.
        self._rows: dict[tuple[str, int], list[Any]] = {}
        self._generation = 0
        # How the last tick's columns mapped onto engine series; the same column objects
        # again go to the engine as one column update, with no per-row work.
        self._layout: _Layout | None = None
        if sampler is not None:
            sampler.subscribe(self._on_sample)

    @property
    def sampler(self) -> CounterSampler | None:
        """The sampler feeding this processor, if any."""
        return self._sampler

    def _on_anomaly(self, reason: str) -> None:
        if is_rejection(reason):
            count_drop(self.component, reason)

    def _on_sample(self, time_ns: int, samples: list[SampleColumns]) -> None:
        with self._lock:
            lay = self._layout
            if lay is None or not lay.fits(samples, self._generation):
                lay, samples = self._resolve(samples, lay)
                self._layout = lay
            self.deriver.engine.observe_many(lay.keys, lay.values(samples), time_ns,
                                             lay.starts, lay.tags)

    def _resolve(self, samples: list[SampleColumns], old: _Layout | None
                 ) -> tuple[_Layout, list[SampleColumns]]:
        """Map every row onto its engine series: the layout, and the well-formed sources.

        Malformed rows and sources are counted (``invalid_sample``) and left out.
        """
        cache = self._rows
        selects = self.deriver.selects
        gen = self._generation
        lay = _Layout(gen)
        good = []
        rows = 0
        for cols in samples:
            try:
                names, attrs, values, starts = cols
                if not len(names) == len(attrs) == len(values) == len(starts):
                    raise ValueError("columns of different lengths")
            except Exception:  # a malformed source: only its rows are lost
                count_drop(self.component, "invalid_sample")
                lay.clean = False
                continue
            rows += len(names)
            mask: list[bool] = []
            for name, a in zip(names, attrs, strict=True):
                mask.append(False)
                e = cache.get((name, id(a)))
                if e is None or e[0] is not a:
                    if not isinstance(name, str) or not selects(name):
                        if not isinstance(name, str):
                            count_drop(self.component, "invalid_sample")
                            lay.clean = False
                        continue  # recognised by name, attributes never touched
                    try:
                        e = cache[(name, id(a))] = [a, *self._prepare(name, a), -1]
                    except Exception:  # attributes that are not a mapping
                        count_drop(self.component, "invalid_sample")
                        lay.clean = False
                        continue
                if e[2] is None:  # feeds only the load, and lacks room/direction/media
                    count_drop(self.component, "missing_attributes")
                    lay.clean = False
                    continue
                if e[3] != gen:
                    if not self._admit(e[1]):
                        continue
                    e[3] = gen
                mask[-1] = True
                lay.keys.append(e[1])
                lay.tags.append(e[2])
            lay.add(cols, mask)
            good.append(cols)
        if len(cache) > 4 * rows + 64:
            cache.clear()  # a source building fresh attribute objects every tick
        if old is not None and lay.keys == old.keys:
            # The same series: the engine's column block goes on (it knows the list).
            lay.keys, lay.tags = old.keys, old.tags
        return lay, good

    def _prepare(self, name: str, attrs: Mapping[str, Any]) -> tuple[Hashable, Any]:
        a = self._key_of(attrs)
        unit, desc = _KNOWN_UNITS.get(name, ("1", ""))
        return (name, a), self.deriver.tag(name, unit, desc, a, False, self.deriver.selects(name))

    def _admit(self, key: Hashable) -> bool:
        if self._gated and key not in self._exported:
            return False
        if key not in self._sampled:
            # The sampler becomes the series' authority: what the batches fed (another
            # start time, the exporter's clock) is not continued from, it starts afresh.
            self._sampled.add(key)
            self.deriver.engine.forget(key)
        return True

    def _key_of(self, attrs: Mapping[str, Any]) -> Attrs:
        """``attrs_key(attrs)``, remembered by the attributes' items (samples repeat them)."""
        try:
            raw = tuple(attrs.items())
            a = self._attr_keys.get(raw)
        except TypeError:  # an unhashable value
            return attrs_key(attrs)
        if a is None:
            if len(self._attr_keys) >= MAX_CACHED_ATTRS:
                self._attr_keys.clear()
            a = self._attr_keys[raw] = attrs_key(attrs)
        return a

    def process(self, metrics_data: MetricsData) -> MetricsData:
        """Feed the batch, then return it with the derived gauges appended."""
        if metrics_data is None:
            return metrics_data  # nothing to carry the readings: keep them for the next
        try:
            s = self._sampler
            if s is not None:
                s.sample_now(min_age_ns=int(s.period_s * NS_PER_S / 10))
            with self._lock:
                self._exports += 1
                self._feed_batch(metrics_data)
                self._forget_unexported()
                groups: DerivedGroups = {}
                now = self._clock()
                self.deriver.derive_into(groups, now)
                metrics = derived_gauges(groups, self._attr_dicts)
                metrics.extend(self._anomaly_metrics(now))
            return add_scope_metrics(metrics_data, _SCOPE, metrics) or metrics_data
        except Exception as exc:
            report_error(self.component, exc)
            return metrics_data

    def _feed_batch(self, data: MetricsData) -> None:
        if data is None:
            return
        d = self.deriver
        selects = d.selects
        engine = d.engine
        observe = engine.observe
        exported = self._exported
        sampled = self._sampled
        n = self._exports
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                if sm.scope is _SCOPE:
                    continue
                for m in sm.metrics:
                    sel = selects(m.name)  # by name first: unselected metrics cost one lookup
                    if not sel:
                        continue
                    md = m.data
                    is_sum = isinstance(md, Sum)
                    kind = source_kind(is_sum, is_sum and md.is_monotonic,
                                       isinstance(md, Histogram),
                                       _temporality(getattr(md, "aggregation_temporality",
                                                            None)))
                    if kind is None:
                        continue
                    cumulative, hist = kind
                    for p in md.data_points:
                        a = self._key_of(p.attributes or {})
                        key = (m.name, a)
                        if key not in exported:
                            self._generation += 1  # a sample row may be admitted now
                        exported[key] = n
                        if key in sampled:
                            continue  # the sampler is this series' authority
                        tag = None
                        if key not in engine:
                            tag = d.tag(m.name, m.unit or "", m.description or "", a, hist, sel)
                            if tag is None:
                                continue
                        observe(key, p.count if hist else p.value, p.time_unix_nano,
                                p.start_time_unix_nano or 0, cumulative, 0, tag)

    def _forget_unexported(self) -> None:
        """Drop series the batches have not shown for a while (bounded bookkeeping)."""
        horizon = self._exports - self._quiet - 1
        stale = [k for k, n in self._exported.items() if n < horizon]
        for k in stale:
            del self._exported[k]
            self._sampled.discard(k)
        if stale:
            self._generation += 1  # admitted rows may have lost their admission

    def _anomaly_metrics(self, now: int) -> list[Metric]:
        """The engine's series count (always: it marks the scope) and its anomalies."""
        out = [Metric(name=SERIES, description=SERIES_DESC, unit="{series}",
                      data=Gauge(data_points=[NumberDataPoint(
                          {names.ATTR_COMPONENT: self.component}, self._start_ns, now,
                          len(self.deriver))]))]
        pts = self.deriver.anomaly_points(self.component)
        if pts:
            dps = [NumberDataPoint(dict(a), self._start_ns, now, n) for a, n in pts]
            out.append(Metric(name=ANOMALIES, description=ANOMALIES_DESC, unit=ANOMALIES_UNIT,
                              data=Sum(data_points=dps, is_monotonic=True,
                                       aggregation_temporality=AggregationTemporality.CUMULATIVE)))
        return out

    def shutdown(self) -> None:
        """Stop receiving samples (the sampler stops when nobody listens)."""
        s = self._sampler
        if s is not None:
            s.unsubscribe(self._on_sample)


class WindowRateProcessor(_DerivedProcessor):
    """Adds ``<name>.rate`` / ``<name>.rate.peak`` gauges, and with ``load`` the traffic load.

    Args:
        config: Peaks, opt-in windows and bounds (:class:`~otel_rtc.core.rates.RateConfig`).
        include: fnmatch patterns of source metrics (monotonic sums and histograms;
            a histogram's rate is of its count). Default: ``otel_rtc.traffic.*``.
        load: Also derive the traffic load from the same engine (one observation per
            point); ``None``: rates only.
        sampler: Feeds running totals every sub-window period (see the module doc);
            ``None`` derives from export batches only.
        clock: Evaluation time (epoch ns).
    """

    component = "rate_processor"

    def __init__(self, config: RateConfig | None = None, *,
                 include: Sequence[str] = DEFAULT_INCLUDE,
                 load: TrafficLoadConfig | None = None,
                 sampler: CounterSampler | None = None,
                 clock: Clock = wall_clock_ns) -> None:
        config = config if config is not None else RateConfig()
        if not isinstance(config, RateConfig):
            raise ValueError("config must be a RateConfig")
        if isinstance(include, str):
            raise ValueError("include must be a sequence of patterns, not a string")
        if load is not None and not isinstance(load, TrafficLoadConfig):
            raise ValueError("load must be a TrafficLoadConfig or None")
        settings = ProcessorSettings(include=tuple(include), rate=config,
                                     load=load or TrafficLoadConfig(rate=config),
                                     load_enabled=load is not None)
        super().__init__(settings, sampler, clock)


class TrafficLoadProcessor(_DerivedProcessor):
    """Adds ``otel_rtc.traffic.load.*`` gauges only: room rates, score (and opt-in top-N).

    Args:
        config: Top-N, weights and the engine's config
            (:class:`~otel_rtc.core.load.TrafficLoadConfig`).
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
        settings = ProcessorSettings(include=(), rate=config.rate, load=config,
                                     rates_enabled=False, load_enabled=True)
        super().__init__(settings, sampler, clock)
