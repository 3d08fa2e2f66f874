"""The SDK layer: ``configure()``, local aggregation, the export stage and processors.

This is the only layer that imports ``opentelemetry.sdk``.
"""
