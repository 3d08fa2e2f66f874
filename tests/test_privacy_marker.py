"""No payload and no exception text leaves the process by default (issue 11.4).

A marker string is put in message payloads, in the messages of exceptions raised by
handlers, by generator handlers and by pub/sub attempts, and in the exceptions raised by
user extractors. The whole program runs in a fresh interpreter through the real export
path of ``configure()`` in file mode (OTLP JSON files), with every stdlib log record also
bridged to the OpenTelemetry logs signal (as a user's logging instrumentation would).
Every exported signal (traces, metrics, logs) and the process's stdout and stderr are
then searched for the marker. The same program with the one opt-in,
``OTEL_RTC_RECORD_EXCEPTION_MESSAGES=true``, shows the marker in spans and logs, which
proves the search can see it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

MARKER = "MARKER-7f3c-PAYLOAD-SECRET"

PROGRAM = r'''
import asyncio, logging, sys, warnings
from opentelemetry.sdk._logs import LoggingHandler

from otel_rtc import configure
from otel_rtc.instrumentation.buffers import InstrumentedQueue
from otel_rtc.instrumentation.handler import MessageHandler
from otel_rtc.instrumentation.pubsub import PubSubTelemetry

out_dir, marker = sys.argv[1], sys.argv[2]
h = configure(output_dir=out_dir, service_name="privacy", export_interval_s=3600)
warnings.simplefilter("ignore")
logging.basicConfig(level=logging.INFO, stream=sys.stderr)  # an app's console logging
logging.getLogger().addHandler(LoggingHandler(logger_provider=h.logger_provider))

class Leak(Exception):
    pass

def bad_extractor(msg):
    raise Leak(f"extractor saw {msg['body']}")

payload = {"body": marker, "t": None}
q = InstrumentedQueue(1, name="inbox", meter_provider=h.meter_provider)
q.offer(payload)
q.offer(payload)  # full: a counted drop
for mode in ("spans", "retroactive", "metrics", "bursts"):
    handler = MessageHandler(f"orders-{mode}", mode=mode, received=bad_extractor,
                             attempt=bad_extractor, message_id=bad_extractor,
                             headers=bad_extractor)

    @handler
    def ok(msg):
        return msg["body"]

    @handler
    def fails(msg):
        raise Leak(f"could not parse {msg['body']}")

    @handler
    def gen(msg):
        yield msg["body"]
        raise Leak(f"while iterating {msg['body']}")

    @handler
    async def afails(msg):
        raise Leak(f"async {msg['body']}")

    ok(q.get() if mode == "spans" else payload)
    for call in (lambda: fails(payload), lambda: list(gen(payload)),
                 lambda: asyncio.run(afails(payload))):
        try:
            call()
        except Leak:
            pass
        else:
            raise SystemExit("the application's exception was swallowed")

ps = PubSubTelemetry(high_publish_delay_s=0.0)
ps.publication("track-1", room="r", participant="p", kind="audio").fail(
    ValueError(f"sdp rejected: {marker}"))
with ps.subscription("track-1", room="r", subscriber="s", kind="audio"):
    pass
try:
    with ps.subscription("track-2", room="r", subscriber="s", kind="video"):
        raise ConnectionError(f"ice failed for {marker}")
except ConnectionError:
    pass

@ps.publishes(lambda msg: (_ for _ in ()).throw(Leak(f"describe {msg}")))
def publish(msg):
    return 1

publish(marker)
h.shutdown()
print("done")
'''


def _run(tmp_path: Path, opt_in: bool) -> tuple[str, dict[str, str]]:
    out = tmp_path / ("opt-in" if opt_in else "default")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OTEL_RTC_"))}
    if opt_in:
        env["OTEL_RTC_RECORD_EXCEPTION_MESSAGES"] = "true"
    r = subprocess.run([sys.executable, "-c", PROGRAM, str(out), MARKER], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "done" in r.stdout, r.stdout + r.stderr
    files = {p.name: p.read_text() for p in sorted(out.iterdir())}
    return r.stdout + r.stderr, files


def test_no_marker_in_any_exported_signal_or_stderr_by_default(tmp_path):
    console, files = _run(tmp_path, opt_in=False)
    assert set(files) == {"traces.jsonl", "metrics.jsonl", "logs.jsonl"}
    # The program ran through every path: failures, extractor errors, pub/sub, buffers.
    assert '"Leak"' in files["traces.jsonl"] and '"ValueError"' in files["traces.jsonl"]
    assert '"ConnectionError"' in files["traces.jsonl"]
    assert "messaging.process.duration" in files["metrics.jsonl"]
    assert "otel_rtc.buffer.dropped" in files["metrics.jsonl"]
    assert "handler.extractor" in files["logs.jsonl"] and "handler.extractor" in console
    assert "pubsub.decorator" in console
    leaks = [name for name, text in {**files, "console": console}.items() if MARKER in text]
    assert not leaks, f"the marker left the process through {leaks}"


def test_the_one_opt_in_lets_exception_text_out(tmp_path):
    console, files = _run(tmp_path, opt_in=True)
    assert MARKER in files["traces.jsonl"]  # span status and exception events
    assert MARKER in files["logs.jsonl"] and MARKER in console  # extractor errors
    assert MARKER not in files["metrics.jsonl"]  # never in metrics, opt-in or not
