#!/usr/bin/env python3
"""Medians of regbench JSON lines for Berth against a baseline, with ratios and targets.

    bench/summarize.py RESULTS.jsonl [...] [--a berth] [--b distribution]

Prints one Markdown table: per headline figure, the median over the successful runs of each
label (n = runs; failed runs are left out and counted), the ratio A/B and which way is better;
then the targets (A/B ratios, push-large against the client's own sha256 speed, A's peak RSS)
with PASS/MISS. Exit status 0 either way: this reports, it does not judge a build.
"""
import json
import statistics
import sys
from collections import defaultdict

# (scenario, figure, JSON path, higher is better)
FIGURES = [
    ("push-large", "monolithic MB/s", "results.monolithic.mb_s", True),
    ("push-large", "chunked MB/s", "results.chunked.mb_s", True),
    ("push-large", "client sha256 MB/s (reference)", "results.client_sha256_mb_s", True),
    ("pull-large", "MB/s (sha256 verified)", "results.mb_s", True),
    ("pull-large", "TTFB ms", "results.ttfb_ms", False),
    ("push-many", "images/s", "results.images_per_s", True),
    ("push-many", "req p50 ms", "results.latency.p50_ms", False),
    ("push-many", "req p99 ms", "results.latency.p99_ms", False),
    ("pull-many", "images/s", "results.images_per_s", True),
    ("pull-many", "req p50 ms", "results.latency.p50_ms", False),
    ("pull-many", "req p99 ms", "results.latency.p99_ms", False),
    ("head-storm", "req/s", "results.requests_per_s", True),
    ("head-storm", "p50 ms", "results.latency.p50_ms", False),
    ("head-storm", "p99 ms", "results.latency.p99_ms", False),
    ("tags-list", "tag PUTs/s", "results.put_per_s", True),
    ("tags-list", "list all tags ms", "results.list_ms", False),
    ("tags-list", "pages", "results.pages", None),
]
PER_SCENARIO = [
    ("server peak RSS MiB", "server.peak_rss_kib", 1 / 1024, False),
    ("server CPU s", "server.cpu_s", 1, False),
]
SCENARIOS = list(dict.fromkeys(s for s, *_ in FIGURES))

# (scenario, figure as named above, minimum A/B ratio)
RATIO_TARGETS = [
    ("push-many", "images/s", 3.5),
    ("pull-many", "images/s", 2.0),
    ("head-storm", "req/s", 6.0),
    ("tags-list", "tag PUTs/s", 5.0),
    ("pull-large", "MB/s (sha256 verified)", 1.2),
]
# push-large MB/s of A ≥ this × the client's sha256 MB/s, per mode (issue 16's tmpfs targets)
PUSH_LARGE_OF_SHA = {"monolithic": 0.8, "chunked": 0.7}
PEAK_RSS_MIB = 32.0  # A's peak RSS in every scenario


def get(d, path):
    for k in path.split("."):
        if not isinstance(d, dict) or d.get(k) is None:
            return None
        d = d[k]
    return d if isinstance(d, (int, float)) and not isinstance(d, bool) else None


def fmt(v):
    if v is None:
        return "–"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def main(argv):
    a, b, files = "berth", "distribution", []
    it = iter(argv)
    for arg in it:
        if arg == "--a":
            a = next(it)
        elif arg == "--b":
            b = next(it)
        else:
            files.append(arg)
    if not files:
        sys.exit(__doc__)
    runs = defaultdict(list)
    failed = defaultdict(list)
    for f in files:
        with open(f) as fh:
            for line in fh:
                if line.strip():
                    j = json.loads(line)
                    key = (j.get("label", ""), j["scenario"])
                    (runs if j.get("ok") else failed)[key].append(j)

    def values(label, scen, path, k=1):
        vs = [get(j, path) for j in runs[(label, scen)]]
        return [v * k for v in vs if v is not None]

    def median(label, scen, path, k=1):
        vs = values(label, scen, path, k)
        return statistics.median(vs) if vs else None

    def cell(label, scen, path, k=1):
        vs = values(label, scen, path, k)
        nf = len(failed[(label, scen)])
        if not vs:
            return f"– ({nf} failed)" if nf else "–"
        extra = f", {nf} failed" if nf else ""
        spread = f" [{fmt(min(vs))}–{fmt(max(vs))}]" if len(vs) > 1 else ""
        return f"{fmt(statistics.median(vs))}{spread} (n={len(vs)}{extra})"

    print(f"| scenario | figure | {a} | {b} | {a}/{b} | better |")
    print("|---|---|---|---|---|---|")
    for scen in SCENARIOS:
        rows = [(n, p, 1, hb) for s, n, p, hb in FIGURES if s == scen] + PER_SCENARIO
        for name, path, k, higher in rows:
            ma, mb = median(a, scen, path, k), median(b, scen, path, k)
            if ma is None and mb is None and not failed[(a, scen)] and not failed[(b, scen)]:
                continue
            ratio = f"{ma / mb:.2f}" if ma is not None and mb else "–"
            better = {True: "higher", False: "lower", None: ""}[higher]
            print(f"| {scen} | {name} | {cell(a, scen, path, k)} | {cell(b, scen, path, k)} "
                  f"| {ratio} | {better} |")

    print()
    print(f"Targets ({a} against {b}, medians):")
    print()
    print("| target | measured | verdict |")
    print("|---|---|---|")

    def verdict(ok):
        return "–" if ok is None else ("PASS" if ok else "MISS")

    for scen, name, want in RATIO_TARGETS:
        path = next(p for s, n, p, _ in FIGURES if s == scen and n == name)
        ma, mb = median(a, scen, path), median(b, scen, path)
        r = ma / mb if ma is not None and mb else None
        print(f"| {scen} {name} ≥ {want}× | {fmt(r)}× | {verdict(None if r is None else r >= want)} |")
    for mode in ("monolithic", "chunked"):
        fr = [
            get(j, f"results.{mode}.mb_s") / get(j, "results.client_sha256_mb_s")
            for j in runs[(a, "push-large")]
            if get(j, f"results.{mode}.mb_s") and get(j, "results.client_sha256_mb_s")
        ]
        r = statistics.median(fr) if fr else None
        shown = "–" if r is None else f"{100 * r:.0f} %"
        want = PUSH_LARGE_OF_SHA[mode]
        print(f"| push-large {mode} ≥ {100 * want:.0f} % of client sha256 MB/s "
              f"| {shown} | {verdict(None if r is None else r >= want)} |")
    peaks = [(v, s) for s in SCENARIOS for v in values(a, s, "server.peak_rss_kib", 1 / 1024)]
    hwms = [v for s in SCENARIOS for v in values(a, s, "server.vmhwm_kib", 1 / 1024)]
    if peaks:
        top, where = max(peaks)
        print(f"| {a} peak RSS ≤ {PEAK_RSS_MIB:.0f} MiB (max over scenarios) "
              f"| {top:.1f} MiB ({where}); lifetime VmHWM {max(hwms):.1f} MiB "
              f"| {verdict(top <= PEAK_RSS_MIB)} |")
    else:
        print(f"| {a} peak RSS ≤ {PEAK_RSS_MIB:.0f} MiB | – | – |")

    for (label, scen), js in sorted(failed.items()):
        for j in js:
            print(f"\nFAILED {label} {scen}: {j.get('errors')} errors; first: {j.get('error')}")


if __name__ == "__main__":
    main(sys.argv[1:])
