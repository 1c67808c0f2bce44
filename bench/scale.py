"""The scale curve: the full gate and an incremental push at 1k / 5k / 20k manifests.

Runs bench.gate_full (pushgate's whole gate vs kubeconform alone, same files, medians) and
bench.gate_incremental (the first push's server time, then 10-file pushes: server p50 and max)
at each size, in one run, and draws them on one chart (`bench/scale.png`, matplotlib, installed
by `make bench`). Cost must grow no worse than linearly: the reported exponent is the slope of
log(time) over log(size) between the smallest and the largest size (1.0 = linear; an
incremental push should be near 0: it costs what changed, not the repository).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import common, gate_full, gate_incremental

NAME = "scale"
SIZES = (1000, 5000, 20000)
CHART = common.ROOT / "bench" / "scale.png"


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """d log(y) / d log(x) between the first and the last point."""
    return math.log(ys[-1] / ys[0]) / math.log(xs[-1] / xs[0])


def chart(path: Path, sizes: Sequence[int], rows: dict[str, list[float]]) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for label in ("full gate, pushgate", "kubeconform alone", "first push (server)"):
        left.plot(sizes, rows[label], marker="o", label=label)
    left.set_xlabel("manifests")
    left.set_ylabel("seconds")
    left.set_title("whole repository")
    left.legend()
    for label in ("incremental push p50 (server)", "incremental push max (server)"):
        right.plot(sizes, [v * 1000 for v in rows[label]], marker="o", label=label)
    right.axhline(150, color="grey", linestyle="--", linewidth=0.8, label="p50 target 150 ms")
    right.set_xlabel("manifests")
    right.set_ylabel("milliseconds")
    right.set_title("10-file push")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = common.parser(NAME, __doc__, 0, 3)
    args.add_argument("--sizes", default=",".join(map(str, SIZES)), help="repository sizes")
    args.add_argument("--pushes", type=int, default=20, help="incremental pushes per size")
    args.add_argument("--chart", default=str(CHART), help="PNG to write ('-' for none)")
    opts = args.parse_args(argv)
    command = common.command_line(NAME, argv)
    started_load = common.load_average()
    sizes = [int(x) for x in opts.sizes.split(",")]
    rows: dict[str, list[float]] = {k: [] for k in (
        "full gate, pushgate", "kubeconform alone", "first push (server)",
        "incremental push p50 (server)", "incremental push max (server)")}
    for n in sizes:
        print(f"== size {n}", flush=True)
        full = gate_full.main(["--size", str(n), "--repeats", str(opts.repeats), "--warmup", "1",
                               "--no-breakdown", "--results", "-"])
        inc = gate_incremental.main(["--size", str(n), "--repeats", str(opts.pushes), "--results", "-"])
        rows["full gate, pushgate"].append(full["median"]["pushgate"])
        rows["kubeconform alone"].append(full["median"]["kubeconform"])
        rows["first push (server)"].append(inc["initial_seconds"])
        rows["incremental push p50 (server)"].append(inc["p50"])
        rows["incremental push max (server)"].append(inc["max"])
    full_s, kc_s = rows["full gate, pushgate"], rows["kubeconform alone"]
    table = [[n, full_s[i], kc_s[i], full_s[i] / kc_s[i], rows["first push (server)"][i],
              rows["incremental push p50 (server)"][i] * 1000,
              rows["incremental push max (server)"][i] * 1000, full_s[i] / n * 1e6]
             for i, n in enumerate(sizes)]
    exps = {k: slope(sizes, v) for k, v in rows.items()} if len(sizes) > 1 else {}
    drawn = opts.chart != "-" and chart(Path(opts.chart), sizes, rows)
    body = [
        f"Sizes {', '.join(map(str, sizes))} (the bench.gate_full corpus); full gate: median of "
        f"{opts.repeats} after 1 warm-up per side; incremental: {opts.pushes} pushes of 10 changed "
        f"files after the first push, server verdict times from the push log.",
        "",
        common.table(["manifests", "full gate s", "kubeconform s", "ratio", "first push s",
                      "10-file p50 ms", "10-file max ms", "full gate us/manifest"], table),
        "",
    ]
    if exps:
        body += ["Growth exponents (log-log slope, smallest to largest size; 1.0 = linear):", "",
                 common.table(["series", "exponent", "no worse than linear"],
                              [[k, v, "yes" if v <= 1.1 else "NO"] for k, v in exps.items()]), ""]
    if drawn:
        body += [f"![scale curve]({Path(opts.chart).name})"]
    else:
        body += ["(no chart: matplotlib is not installed; `make bench` installs it)"]
    text = "\n".join(body)
    print()
    print(text)
    common.write_section(opts.results, NAME, common.section(
        NAME, "the scale curve, 1k / 5k / 20k manifests", command, text, started_load))
    return {"sizes": sizes, "rows": rows, "exponents": exps, "chart": bool(drawn)}


if __name__ == "__main__":
    main()
