"""Default processor chain of the export stage: window rates and traffic load.

Configured from ``OTEL_RTC_*`` environment variables (see ``docs/processor.md``): one
processor, one engine, for the rates and the traffic load, fed by one
:class:`~otel_rtc.sdk.sampler.CounterSampler` reading the globally registered sample
sources (every row is observed once).
"""

from __future__ import annotations

import os

from otel_rtc.sdk.export import MetricsProcessor


def default_processors() -> list[MetricsProcessor]:
    """Processors that ``configure()`` and the entry-point exporter install.

    ``OTEL_RTC_RATES=false`` / ``OTEL_RTC_LOAD=false`` leave one part out. Never raises: on an
    internal error the chain is empty (and the error counted).
    """
    try:
        from otel_rtc.core.processor_settings import settings_from_env
        from otel_rtc.sdk.processors import TrafficLoadProcessor, WindowRateProcessor
        from otel_rtc.sdk.sampler import CounterSampler

        st = settings_from_env(os.environ)
        sampler = CounterSampler(st.sample_period_s)
        if st.rates_enabled:
            return [WindowRateProcessor(st.rate, include=st.include,
                                        load=st.load if st.load_enabled else None,
                                        sampler=sampler)]
        if st.load_enabled:
            return [TrafficLoadProcessor(st.load, sampler=sampler)]
        return []
    except Exception as exc:
        from otel_rtc.instrumentation.self_telemetry import report_error

        report_error("default_processors", exc)
        return []
