"""Collector side: otel_rtc's metric processor inside Rotel, and the Rotel launcher.

``otel_rtc/collector/processor.py`` is loaded by Rotel's embedded interpreter and imports
only the standard library and :mod:`otel_rtc.core`.
"""
