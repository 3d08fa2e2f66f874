"""Runs every shared rate vector (tests/vectors/rates/*.json) against the Python core.

The same files drive the Go processor's tests, so both implement one contract
(``docs/rates.md``, "The v2 contract"; format in ``tests/vectors/rates/README.md``).
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from otel_rtc.core.load import TrafficLoadConfig, room_loads
from otel_rtc.core.rates import RateConfig, RateEngine

VECTORS = Path(__file__).resolve().parent / "vectors" / "rates"
FILES = sorted(VECTORS.glob("*.json"))


def _close(got: float | None, want: float | None, tol: dict) -> bool:
    if want is None or got is None:
        return got is None and want is None
    return math.isclose(got, want, rel_tol=tol["rel"], abs_tol=tol["abs"])


def _config(c: dict) -> RateConfig:
    return RateConfig(peak_subwindows_s=tuple(c["peak_subwindows_s"]),
                      windows_s=tuple(c["windows_s"]), window_bucket_s=c["window_bucket_s"],
                      quiet_intervals=c["quiet_intervals"], gap_after_s=c["gap_after_s"],
                      wrap_modulus=c["wrap_modulus"], max_series=c["max_series"])


def run_vector(v: dict) -> None:
    tol = v["tolerance"]
    eng = RateEngine(_config(v["config"]), clock=lambda: 0)
    series = v["series"]
    for n, step in enumerate(v["steps"]):
        if "points" in step:
            for name, time_ns, value, start_ns, flags in step["points"]:
                cumulative = series[name]["temporality"] == "cumulative"
                eng.observe(name, value, time_ns, start_ns, cumulative, flags, name)
            continue
        got = {r.key: r for r in eng.read(step["read"], None, v["config"]["reading_min_span_s"])}
        want = {e["series"]: e for e in step["expect"]}
        where = f"{v['name']} step {n} (read at {step['read']})"
        assert set(got) == set(want), f"{where}: series read {sorted(got)} != {sorted(want)}"
        for name, e in want.items():
            r = got[name]
            assert _close(r.mean, e["mean"], tol), f"{where} {name}: mean {r.mean} != {e['mean']}"
            assert (r.start_ns, r.time_ns) == (e["start_ns"], e["time_ns"]), \
                f"{where} {name}: span {(r.start_ns, r.time_ns)} != {(e['start_ns'], e['time_ns'])}"
            assert len(r.peaks) == len(e["peaks"])
            for g, w in zip(r.peaks, e["peaks"], strict=True):
                assert _close(g, w, tol), f"{where} {name}: peaks {r.peaks} != {e['peaks']}"
            assert r.final == e["final"], f"{where} {name}: final"
            if "windows" in e:
                for g, w in zip(r.windows, e["windows"], strict=True):
                    if w is None:
                        assert g is None
                    else:
                        assert _close(g[0], w[0], tol) and (g[1], g[2]) == (w[1], w[2]), \
                            f"{where} {name}: windows {r.windows} != {e['windows']}"
        if "load" in step:
            cfg = TrafficLoadConfig(top_n=v["config"].get("load_top_n", 0))
            rows = []
            for r in got.values():
                lk = series[r.key].get("load")
                if lk is not None:
                    rows.append(((lk["room"], lk["participant"], lk["direction"],
                                  lk["media"], lk["unit"]), r.mean, r.start_ns, r.time_ns))
            loads = room_loads(rows, cfg)
            assert set(loads) == set(step["load"])
            for room, e in step["load"].items():
                rl = loads[room]
                assert _close(rl.score, e["score"], tol)
                assert rl.participants == e["participants"]
                assert {"/".join(k): x for k, x in rl.by_stream.items()}.keys() == \
                    e["rates"].keys()
                for k, x in rl.by_stream.items():
                    assert _close(x, e["rates"]["/".join(k)], tol)
                assert [p.participant for p in rl.top] == [p["participant"] for p in e["top"]]
                for p, w in zip(rl.top, e["top"], strict=True):
                    assert _close(p.score, w["score"], tol) and _close(p.share, w["share"], tol)
                o = e["others"]
                assert rl.others.participants == o["participants"]
                assert _close(rl.others.score, o["score"], tol)
                assert _close(rl.others.share, o["share"], tol)
    assert eng.anomaly_counts() == v["anomalies"], v["name"]


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_vector(path: Path) -> None:
    run_vector(json.loads(path.read_text()))


def test_every_vector_is_generated_from_generate_py() -> None:
    """The committed JSON is exactly what generate.py writes (one source of truth)."""
    spec = importlib.util.spec_from_file_location("rate_vectors", VECTORS / "generate.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    cases = mod.cases()
    assert {c["name"] for c in cases} == {p.stem for p in FILES}
    for c in cases:
        assert (VECTORS / f"{c['name']}.json").read_text() == mod.dumps(c) + "\n", c["name"]
    assert len(cases) >= 15
