"""Instrumentation: message handlers, buffers, pub/sub, sessions, bursts and traffic.

Depends on the OpenTelemetry API and ``wrapt`` only at import time, like the contrib
instrumentations: with no SDK configured every instrument is a no-op.
"""
