"""Writes the shared rate vectors (``*.json`` next to this file).

Run ``python tests/vectors/rates/generate.py`` after changing a case. Every expected
value below is worked out by hand from the contract in ``docs/rates.md`` (never by
running an engine), so the vectors test the Python core and the Go processor alike.
``tests/test_rate_vectors.py`` checks that the committed JSON matches this script.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
S = 1_000_000_000
T0 = 1_700_000_000 * S
MBPS = 1e6 / 8  # bytes per second in one megabit per second

DEFAULT_CONFIG = {
    "peak_subwindows_s": [1.0],
    "windows_s": [],
    "window_bucket_s": 10.0,
    "quiet_intervals": 2,
    "gap_after_s": 60.0,
    "wrap_modulus": None,
    "max_series": 2000,
    "reading_min_span_s": 0.0,
}


def t(sec: float) -> int:
    return T0 + round(sec * S)


def pt(series: str, sec: float, value: float, start: int = 0, flags: int = 0) -> list:
    return [series, t(sec), value, start, flags]


def reading(series: str, mean: float, start_s: float, end_s: float, peaks: list,
            final: bool = False, windows: list | None = None) -> dict:
    r = {"series": series, "mean": mean, "start_ns": t(start_s), "time_ns": t(end_s),
         "peaks": peaks, "final": final}
    if windows is not None:
        r["windows"] = windows
    return r


def vector(name: str, description: str, series: dict, steps: list, anomalies: dict,
           config: dict | None = None, rel: float = 1e-9) -> dict:
    cfg = dict(DEFAULT_CONFIG)
    cfg.update(config or {})
    return {"name": name, "description": description, "config": cfg, "series": series,
            "steps": steps, "anomalies": anomalies, "tolerance": {"rel": rel, "abs": 1e-9}}


CUM = {"temporality": "cumulative"}
DELTA = {"temporality": "delta"}


def cases() -> list[dict]:
    out = []

    # 1. The reference's fake spike: 5 minutes of bytes at 1 Mbps, read 2 s later.
    out.append(vector(
        "accumulation_5min_read_over_2s",
        "One cumulative point holding 5 minutes of bytes at 1 Mbps (start 300 s before), "
        "read 2 s after it: the mean is over the data's own 300 s, not 2 s (no 150x "
        "spike); a 300 s interval is no 1 s peak.",
        {"b": CUM},
        [{"points": [pt("b", 300, 300 * MBPS, start=t(0))]},
         {"read": t(302), "expect": [reading("b", MBPS, 0, 300, [None])]}],
        {}))

    # 2. The reference's smoothed spike, with the opt-in 5 s peak.
    pts = [pt("b", 0, 0.0, start=t(0))]
    total = 0.0
    for i in range(1, 301):
        if 100 < i <= 110:
            total += 100 * MBPS
        pts.append(pt("b", i, total, start=t(0)))
    out.append(vector(
        "spike_10s_in_5min",
        "Bytes sampled every 1 s for 300 s, idle except 100 Mbps for 10 s: the mean "
        "reads 3.33 Mbps, the 1 s and 5 s peaks 100 Mbps. The first point (start == "
        "time) is the baseline.",
        {"b": CUM},
        [{"points": pts},
         {"read": t(300), "expect": [
             reading("b", 10 * 100 * MBPS / 300, 0, 300, [100 * MBPS, 100 * MBPS])]}],
        {}, config={"peak_subwindows_s": [1.0, 5.0]}))

    # 3. Readings tile the time line: two reads of a steady 10/s count.
    out.append(vector(
        "readings_tile_the_span",
        "A count rising 10/s sampled every 1 s (start 0 s), read at 10.5 s and 25 s: "
        "each reading covers the data since the previous one (its span ends at its "
        "last point, not at the read), and the second starts where the first ended. "
        "The first point's span (0, 1 s] is a real 1 s interval.",
        {"c": CUM},
        [{"points": [pt("c", i, 10.0 * i, start=t(0)) for i in range(1, 11)]},
         {"read": t(10.5), "expect": [reading("c", 10.0, 0, 10, [10.0])]},
         {"points": [pt("c", i, 10.0 * i, start=t(0)) for i in range(11, 26)]},
         {"read": t(25), "expect": [reading("c", 10.0, 10, 25, [10.0])]}],
        {}))

    # 4. Counter reset without a start time change.
    pts = [pt("c", i, 10.0 * i, start=t(0)) for i in range(1, 21)]
    pts.append(pt("c", 21, 5.0, start=t(0)))  # restarted inside (20, 21]
    pts += [pt("c", i, 5.0 + 10.0 * (i - 21), start=t(0)) for i in range(22, 41)]
    out.append(vector(
        "reset",
        "A count rising 10/s drops to 5 at t=21 (a restart inside (20, 21]): the 5 is "
        "the increase over that interval (a lower bound), never a negative rate. "
        "Increase 200 + 5 + 190 over 40 s.",
        {"c": CUM},
        [{"points": pts},
         {"read": t(40), "expect": [reading("c", 395.0 / 40, 0, 40, [10.0])]}],
        {"reset": 1}))

    # 5. First points: baselines and short spans.
    out.append(vector(
        "first_point_baselines",
        "'a': no start time, first value 1e9 (history) is only the baseline. 'b': start "
        "50 us before the first point with the whole history as value: short_span, a "
        "baseline. 'c': start 5 s before, value 50: a real 5 s interval (10/s, too long "
        "for a 1 s peak). 'd': start == time, value 0: a baseline.",
        {"a": CUM, "b": CUM, "c": CUM, "d": CUM},
        [{"points": [pt("a", 0, 1e9), pt("b", 0, 3e8, start=t(0) - 50_000),
                     pt("c", 0, 50.0, start=t(-5)), pt("d", 0, 0.0, start=t(0))]},
         {"points": [pt("a", i, 1e9 + 10.0 * i) for i in range(1, 11)]
          + [pt("b", i, 3e8 + 20.0 * i, start=t(0) - 50_000) for i in range(1, 11)]
          + [pt("c", i, 50.0 + 10.0 * i, start=t(-5)) for i in range(1, 11)]
          + [pt("d", i, 30.0 * i, start=t(0)) for i in range(1, 11)]},
         {"read": t(10), "expect": [
             reading("a", 10.0, 0, 10, [10.0]),
             reading("b", 20.0, 0, 10, [20.0]),
             reading("c", 10.0, -5, 10, [10.0]),
             reading("d", 30.0, 0, 10, [30.0])]}],
        {"short_span": 1}))

    # 6. Delta points.
    pts = [["d", t(i), 10.0, t(i - 1), 0] for i in range(1, 11)]      # start set
    pts += [["d", t(i), 20.0, 0, 0] for i in range(11, 16)]           # unset: prev end
    pts += [["d", t(20), 10.0, t(19), 0]]                             # (15, 19] uncovered
    out.append(vector(
        "delta_points",
        "Delta points of 10 per 1 s (start set), then 20 per 1 s with the start unset "
        "(each starts at the previous end), then one point over (19, 20] after 4 s with "
        "no data: the uncovered time counts as no increase (a lower bound). A first "
        "delta point without a start only opens the series ('e').",
        {"d": DELTA, "e": DELTA},
        [{"points": [*pts, ["e", t(1), 99.0, 0, 0], ["e", t(2), 7.0, t(1), 0]]},
         {"read": t(20), "expect": [
             reading("d", (100.0 + 100.0 + 10.0) / 20, 0, 20, [20.0]),
             reading("e", 7.0, 1, 2, [7.0])]}],
        {}))

    # 7. The staleness marker (start time shows continuity).
    def marker_points(start: int) -> list:
        p = [pt("h", i, 10.0 * i, start=start) for i in range(1, 50)]
        p.append(pt("h", 50, 0.0, start=start, flags=1))  # NoRecordedValue
        p += [pt("h", i, 10.0 * i, start=start if start else 0) for i in range(51, 101)]
        return p

    out.append(vector(
        "staleness_marker_continuity",
        "A histogram count rising 10/s sampled every 1 s (start fixed), with one "
        "NoRecordedValue marker (count 0) at t=50: the marker is neither a value nor a "
        "reset; the point at 51 shows continuity by its start time, so (49, 51] is a "
        "real 2 s interval. True 10/s throughout: no 510/s peak.",
        {"h": CUM},
        [{"points": marker_points(t(0))},
         {"read": t(100), "expect": [reading("h", 10.0, 0, 100, [10.0])]}],
        {"stale": 1}))
    out.append(vector(
        "staleness_marker_unset_start",
        "As staleness_marker_continuity, with the start time unset: the point after "
        "the marker is a new baseline, so (49, 51] is uncovered and counts as no "
        "increase: 980 over 100 s (a lower bound); the first point is a baseline too.",
        {"h": CUM},
        [{"points": [pt("h", i, 10.0 * i) for i in range(0, 50)]
          + [pt("h", 50, 0.0, flags=1)]
          + [pt("h", i, 10.0 * i) for i in range(51, 101)]},
         {"read": t(100), "expect": [reading("h", 980.0 / 100, 0, 100, [10.0])]}],
        {"stale": 1}))

    # 8. Quiet series and the final reading.
    out.append(vector(
        "quiet_series_final_reading",
        "A count rising 10/s for 10 s, then silent. Read at 10 s (a reading), 20 s "
        "(silent once: nothing), 30 s (silent twice: one final reading of 0 over "
        "[10 s, 30 s] and the series is forgotten), 40 s (nothing). A point at 45 s "
        "starts the series again as a new one (its first point is a baseline).",
        {"c": CUM},
        [{"points": [pt("c", i, 10.0 * i) for i in range(0, 11)]},
         {"read": t(10), "expect": [reading("c", 10.0, 0, 10, [10.0])]},
         {"read": t(20), "expect": []},
         {"read": t(30), "expect": [reading("c", 0.0, 10, 30, [0.0], final=True)]},
         {"read": t(40), "expect": []},
         {"points": [pt("c", 45, 450.0), pt("c", 46, 460.0)]},
         {"read": t(50), "expect": [reading("c", 10.0, 45, 46, [10.0])]}],
        {"quiet": 1}))
    out.append(vector(
        "quiet_series_zero_rate_is_not_quiet",
        "A counter that keeps reporting the same value is not quiet: each reading "
        "reads 0 over its own span.",
        {"c": CUM},
        [{"points": [pt("c", i, 5.0) for i in range(0, 11)]},
         {"read": t(10), "expect": [reading("c", 0.0, 0, 10, [0.0])]},
         {"points": [pt("c", i, 5.0) for i in range(11, 21)]},
         {"read": t(20), "expect": [reading("c", 0.0, 10, 20, [0.0])]},
         {"points": [pt("c", i, 5.0) for i in range(21, 31)]},
         {"read": t(30), "expect": [reading("c", 0.0, 20, 30, [0.0])]}],
        {}))

    # 8b. A collector's reading span: short new data waits, a silent read flushes it.
    out.append(vector(
        "reading_min_span",
        "With reading_min_span_s 10 (a collector's default), a series whose new data "
        "spans less than 9.5 s and that got a point since the previous read is not read "
        "yet. Rising 10/s from a baseline at 0 s: read at 3 s (3 s of data: held), at "
        "10 s (one reading over [0, 10] s), at 19 s (9 s: held), at 20 s after a point "
        "at 19.6 s (9.6 s >= 0.95 x 10 s: a reading over [10, 19.6] s). Then 200 in "
        "one second inside 3 s of data, read at 23 s (held); the read at 30 s got no "
        "point, so the held data is read at once: mean (416 - 196) / 3 s, 1 s peak "
        "200/s (the last data is never held back). That read does not count as silent: "
        "40 s is the first silent read, 50 s the second (final 0 over [22.6, 50] s).",
        {"c": CUM},
        [{"points": [pt("c", i, 10.0 * i) for i in range(0, 4)]},
         {"read": t(3), "expect": []},
         {"points": [pt("c", i, 10.0 * i) for i in range(4, 11)]},
         {"read": t(10), "expect": [reading("c", 10.0, 0, 10, [10.0])]},
         {"points": [pt("c", i, 10.0 * i) for i in range(11, 20)]},
         {"read": t(19), "expect": []},
         {"points": [pt("c", 19.6, 196.0)]},
         {"read": t(20), "expect": [reading("c", 10.0, 10, 19.6, [10.0])]},
         {"points": [pt("c", 20.6, 206.0), pt("c", 21.6, 406.0), pt("c", 22.6, 416.0)]},
         {"read": t(23), "expect": []},
         {"read": t(30), "expect": [reading("c", 220.0 / 3, 19.6, 22.6, [200.0])]},
         {"read": t(40), "expect": []},
         {"read": t(50), "expect": [reading("c", 0.0, 22.6, 50, [0.0], final=True)]}],
        {"quiet": 1},
        config={"reading_min_span_s": 10.0}))

    # 9. Gap.
    pts = [pt("g", i, 10.0 * i, start=t(0)) for i in range(1, 11)]
    pts.append(pt("g", 130, 10.0 * 10 + 5.0 * 120, start=t(0)))  # 120 s gap at 5/s
    pts += [pt("g", 130 + i, 700.0 + 10.0 * i, start=t(0)) for i in range(1, 11)]
    out.append(vector(
        "gap",
        "1 s samples, then nothing for 120 s (> gap_after_s 60), then 1 s samples "
        "again: the gap interval counts in the mean (exact) but is no 1 s peak.",
        {"g": CUM},
        [{"points": pts},
         {"read": t(140), "expect": [reading("g", 800.0 / 140, 0, 140, [10.0])]}],
        {"gap": 1}))

    # 10. Start time change (a restart with its own start).
    pts = [pt("c", i, 10.0 * i, start=t(0)) for i in range(1, 11)]
    pts.append(pt("c", 15, 40.0, start=t(12)))  # new run over (12, 15]
    pts += [pt("c", 15 + i, 40.0 + 10.0 * i, start=t(12)) for i in range(1, 6)]
    out.append(vector(
        "start_time_change",
        "The start time moves to 12 s (after the last point at 10 s): the new run's "
        "first value is the increase over (12, 15]; (10, 12] is uncovered. Increase "
        "100 + 40 + 50 over 20 s.",
        {"c": CUM},
        [{"points": pts},
         {"read": t(20), "expect": [reading("c", 190.0 / 20, 0, 20, [10.0])]}],
        {"start_time_change": 1}))

    # 11. Rejections.
    out.append(vector(
        "rejections",
        "Duplicate time, out of order, negative values, a start after the time: each "
        "is rejected and counted by kind; the series keeps its state.",
        {"c": CUM, "d": DELTA},
        [{"points": [pt("c", 0, 0.0, start=t(0)), pt("c", 1, 10.0, start=t(0)),
                     pt("c", 1, 11.0, start=t(0)), pt("c", 0.5, 5.0, start=t(0)),
                     pt("c", 2, -1.0, start=t(0)), pt("c", 2, 20.0, start=t(0)),
                     ["d", t(1), 5.0, t(0), 0], ["d", t(2), -5.0, t(1), 0],
                     ["d", t(3), 5.0, t(4), 0], ["d", t(2), 5.0, t(1), 0]]},
         {"read": t(2), "expect": [reading("c", 10.0, 0, 2, [10.0]),
                                   reading("d", 5.0, 0, 2, [5.0])]}],
        {"duplicate": 1, "out_of_order": 1, "negative_value": 1, "negative_delta": 1,
         "bad_span": 1}))

    # 12. Wrap-around of a 32-bit transport counter.
    m = 2**32
    out.append(vector(
        "wrap",
        "A 32-bit counter (wrap_modulus 2^32) passes its maximum between two 1 s "
        "samples: the wrapped increase (100), not a reset.",
        {"w": CUM},
        [{"points": [pt("w", 0, m - 150.0), pt("w", 1, m - 50.0), pt("w", 2, 50.0)]},
         {"read": t(2), "expect": [reading("w", 100.0, 0, 2, [100.0])]}],
        {"wrap": 1}, config={"wrap_modulus": float(m)}))

    # 13. Finer sampling: 0.25 s samples resolve the 1 s peak over runs of 4.
    pts = [pt("f", 0, 0.0, start=t(0))]
    total = 0.0
    for i in range(1, 41):  # 10 s in 0.25 s steps; 400/s during (4, 5], else 40/s
        total += 100.0 if 16 < i <= 20 else 10.0
        pts.append(pt("f", i * 0.25, total, start=t(0)))
    out.append(vector(
        "fine_sampling_runs",
        "Samples every 0.25 s; 400/s during (4 s, 5 s], 40/s otherwise: the 1 s peak "
        "is the run of 4 intervals (4, 5] at 400/s.",
        {"f": CUM},
        [{"points": pts},
         {"read": t(10), "expect": [reading("f", total / 10, 0, 10, [400.0])]}],
        {}))

    # 14. Opt-in trailing windows (10 s buckets).
    pts = [pt("w", i, 10.0 * i + (90.0 * (i - 30) if i > 30 else 0.0), start=t(0))
           for i in range(0, 41)]
    out.append(vector(
        "windows_opt_in",
        "Opt-in 10 s and 20 s windows over 10 s buckets aligned to the epoch (T0 is a "
        "multiple of 10 s); 10/s for 30 s, then 100/s. Read at 40 s: the 10 s window "
        "holds the intervals ending in (30 s, 40 s], the 20 s window those ending in "
        "(20 s, 40 s].",
        {"w": CUM},
        [{"points": pts},
         {"read": t(40), "expect": [reading("w", (300.0 + 1000.0) / 40, 0, 40, [100.0],
                                            windows=[[100.0, t(30), t(40)],
                                                     [(100.0 + 1000.0) / 20, t(20),
                                                      t(40)]])]}],
        {}, config={"windows_s": [10.0, 20.0]}))

    # 15. Traffic load.
    def tr(room: str, pid: str, direction: str, media: str, unit: str) -> dict:
        return {"temporality": "cumulative",
                "load": {"room": room, "participant": pid, "direction": direction,
                         "media": media, "unit": unit}}

    series = {
        "a_up_vb": tr("r1", "alice", "up", "video", "bytes"),
        "a_up_vp": tr("r1", "alice", "up", "video", "packets"),
        "b_dn_ab": tr("r1", "bob", "down", "audio", "bytes"),
        "b_dn_ap": tr("r1", "bob", "down", "audio", "packets"),
        "c_up_db": tr("r2", "carol", "up", "data", "bytes"),
    }
    rates = {"a_up_vb": 125_000.0, "a_up_vp": 100.0, "b_dn_ab": 4_000.0, "b_dn_ap": 50.0,
             "c_up_db": 10.0}
    pts = [pt(k, i, r * i, start=t(0)) for i in range(0, 11) for k, r in rates.items()]
    score_a = 8 * 125_000 + 4000 * 100
    score_b = 8 * 4_000 + 4000 * 50
    out.append(vector(
        "traffic_load_rooms",
        "Two rooms; alice sends 1 Mbit/s + 100 packets/s of video up, bob receives "
        "32 kbit/s + 50 packets/s of audio, carol 80 bit/s of data in another room. "
        "Default weights (bit 1, packet 4000, others 1). Per room: rates per "
        "direction/media/unit, the score and the participant count; with top_n 1, "
        "alice's share and everyone else as _other.",
        series,
        [{"points": pts},
         {"read": t(10),
          "expect": [reading(k, r, 0, 10, [r]) for k, r in rates.items()],
          "load": {
              "r1": {"score": score_a + score_b, "participants": 2,
                     "rates": {"up/video/bytes": 125_000.0, "up/video/packets": 100.0,
                               "down/audio/bytes": 4_000.0, "down/audio/packets": 50.0},
                     "top": [{"participant": "alice", "score": score_a,
                              "share": score_a / (score_a + score_b)}],
                     "others": {"participants": 1, "score": score_b,
                                "share": score_b / (score_a + score_b)}},
              "r2": {"score": 80.0, "participants": 1, "rates": {"up/data/bytes": 10.0},
                     "top": [{"participant": "carol", "score": 80.0, "share": 1.0}],
                     "others": {"participants": 0, "score": 0.0, "share": 0.0}}}}],
        {}, config={"load_top_n": 1}))
    return out


def dumps(v: dict) -> str:
    """JSON with one point (or any array of plain values) per line."""
    text = json.dumps(v, indent=1)
    return re.sub(r"\[\n\s+([^\[\]{}]*?)\n\s+\]",
                  lambda m: "[" + re.sub(r",\n\s+", ", ", m.group(1)) + "]", text)


def main() -> int:
    for v in cases():
        (HERE / f"{v['name']}.json").write_text(dumps(v) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
