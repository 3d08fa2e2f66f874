"""The pure core: bursts, rates, traffic load, session state, switches and clocks.

Standard library only, driven by explicit timestamps and an injectable clock, so the same
code runs in-process, inside a collector's embedded interpreter (Rotel) and in replays of
recorded timelines. Nothing here imports OpenTelemetry.
"""
