"""Plot the reference case: a 10 s, 100 Mbps spike inside a 5-minute report.

Run: .venv/bin/python docs/plot_spike.py   (writes docs/img/spike.png)

Lines: the true instantaneous rate; what the RateEngine reads at exports every 10 s (the
mean over each export's span and the 1 s peak within it) and at one export after 5
minutes (the mean over the 300 s and its 1 s peak); and the two naive computations: 5
minutes of bytes divided by the 300 s report window (smooths the spike away) and divided
by a 2 s read window (invents a 500 Mbps spike).
"""

from __future__ import annotations

import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from otel_rtc.core.rates import RateEngine

S = 1_000_000_000
T0 = 1_700_000_000 * S
MBPS = 1e6 / 8


def main() -> pathlib.Path:
    every = RateEngine(clock=lambda: T0)  # defaults: span mean + 1 s peak
    once = RateEngine(clock=lambda: T0)
    total = 0.0
    for e in (every, once):
        e.observe("bytes", 0.0, T0, T0)
    xs, truth, mean10, peak10 = [], [], [], []
    for i in range(1, 301):
        rate = 100 * MBPS if 100 < i <= 110 else 0.0
        total += rate
        t = T0 + i * S
        for e in (every, once):
            e.observe("bytes", total, t, T0)
        xs.append(i)
        truth.append(rate / MBPS)
        if i % 10 == 0:
            [r] = every.read(t)
            mean10 += [r.mean / MBPS] * 10
            peak10 += [(r.peaks[0] or 0.0) / MBPS] * 10
    [late] = once.read(T0 + 300 * S)
    mean = [late.mean / MBPS] * len(xs)
    peak_late = (late.peaks[0] or 0.0) / MBPS
    naive_report = total / 300.0 / MBPS
    naive_short = total / 2.0 / MBPS

    fig, ax = plt.subplots(figsize=(10, 6.5), dpi=110)
    ax.fill_between(xs, truth, step="pre", color="0.85", label="true rate (input)")
    ax.step(xs, peak10, color="tab:red", lw=2,
            label="1 s peak within each 10 s export")
    ax.step(xs, mean10, color="tab:green", lw=1.5, label="mean over each 10 s export's span")
    ax.plot(xs, mean, color="tab:blue", lw=2,
            label=f"one export after 5 min: mean {late.mean / MBPS:.2f} Mbps "
                  f"(its 1 s peak: {peak_late:.0f} Mbps)")
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
    print(f"wrote {out}: mean {mean[-1]:.2f} Mbps, peak 1 s {peak_late:.1f} Mbps, "
          f"naive {naive_report:.2f} / {naive_short:.0f} Mbps")
    return out


if __name__ == "__main__":
    main()
