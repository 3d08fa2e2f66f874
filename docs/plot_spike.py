"""Plot the reference case: a 10 s, 100 Mbps spike inside a 5-minute report.

Run: .venv/bin/python docs/plot_spike.py   (writes docs/img/spike.png)

Lines: the true instantaneous rate; the RateEngine's 1 s and 5 s peaks and 10 s window
rate as a reader polling every second would see them; the RateEngine's mean over the
data's own span; and the two naive computations: 5 minutes of bytes divided by the 300 s
report window (smooths the spike away) and divided by a 2 s read window (invents a
500 Mbps spike).
"""

from __future__ import annotations

import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from otel_rtc.core.rates import RateConfig, RateEngine

S = 1_000_000_000
T0 = 1_700_000_000 * S
MBPS = 1e6 / 8


def main() -> pathlib.Path:
    eng = RateEngine(RateConfig(windows_s=(10.0, 60.0, 300.0), peak_subwindows_s=(1.0, 5.0)),
                     clock=lambda: T0)
    total = 0.0
    eng.observe("bytes", 0.0, T0, start_ns=T0)
    xs, truth, peak1, peak5, win10, mean = [], [], [], [], [], []
    for i in range(1, 301):
        rate = 100 * MBPS if 100 < i <= 110 else 0.0
        total += rate
        t = T0 + i * S
        eng.observe("bytes", total, t, start_ns=T0)
        r = eng.rates("bytes", t)
        xs.append(i)
        truth.append(rate / MBPS)
        peak1.append((r.peak_rates[1.0] or 0.0) / MBPS)
        peak5.append((r.peak_rates[5.0] or 0.0) / MBPS)
        win10.append((r.window_rates[10.0] or 0.0) / MBPS)
        mean.append((r.mean_rate or 0.0) / MBPS)
    naive_report = total / 300.0 / MBPS
    naive_short = total / 2.0 / MBPS

    fig, ax = plt.subplots(figsize=(10, 6.5), dpi=110)
    ax.fill_between(xs, truth, step="pre", color="0.85", label="true rate (input)")
    ax.plot(xs, peak1, color="tab:red", lw=2,
            label="RateEngine peak of 1 s sub-windows over the last 300 s")
    ax.plot(xs, peak5, color="tab:orange", lw=1.5, ls="--",
            label="RateEngine peak of 5 s sub-windows")
    ax.plot(xs, win10, color="tab:green", lw=1.5, label="RateEngine 10 s window rate")
    ax.plot(xs, mean, color="tab:blue", lw=2, label="RateEngine mean over own span")
    ax.axhline(naive_report, color="tab:purple", ls=":", lw=2,
               label=f"naive: 5 min bytes / 300 s = {naive_report:.2f} Mbps (spike lost)")
    ax.axhline(naive_short, color="black", ls="-.", lw=1.5,
               label=f"naive: 5 min bytes / 2 s = {naive_short:.0f} Mbps (fake spike)")
    ax.set_xlabel("seconds into the 5-minute report")
    ax.set_ylabel("Mbps (symlog scale)")
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_ylim(0, 1000)
    ax.set_title("100 Mbps for 10 s inside a 5-minute report (bytes sampled every 1 s)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, fontsize=8)
    ax.grid(True, alpha=0.3)
    out = pathlib.Path(__file__).parent / "img" / "spike.png"
    out.parent.mkdir(exist_ok=True)
    fig.tight_layout()
    fig.savefig(out)
    print(f"wrote {out}: mean {mean[-1]:.2f} Mbps, peak 1 s {max(peak1):.1f} Mbps, "
          f"naive {naive_report:.2f} / {naive_short:.0f} Mbps")
    return out


if __name__ == "__main__":
    main()
