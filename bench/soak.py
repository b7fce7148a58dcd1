#!/usr/bin/env python3
"""Soak: mixed registry traffic at a fixed concurrency for a long time, sampling the server.

    python3 bench/soak.py --url http://127.0.0.1:PORT --pid PID --minutes 30 --out DIR

Standard library only. `--concurrency` client threads (default 64) loop over a weighted mix:

  pull  50%  GET a stable image's manifest by tag, then its layer (length checked)
  push  25%  upload a config and a 4-64 KiB layer (POST + PUT ?digest=), PUT the manifest
             under a churn tag (pushes to churn repositories, never pulled)
  move  15%  re-point a stable tag `t<N>` to another stable image (a tag move)
  delete 10% DELETE a churn image by digest

Pushes outnumber deletes, so the index grows without end unless `--keep N` is given: then a
worker deletes instead of its drawn operation while more than N churn images are kept, and the
index settles at about N images (the size of a registry in steady state).

Stable images keep a tag of their own (`keep-<i>`), so garbage collection never takes what
pulls and tag moves use; every minute (`--gc-every`) a collection runs (`POST
/api/v1/gc/runs`, grace 120 s), which takes the deleted churn images' blobs. Any answer
other than the expected one is an error, counted and its first lines kept.

Every 5 s the sampler reads the server's resident memory from /proc/PID/status, split into
anonymous memory (RssAnon: the heap, what a leak grows) and file pages (RssFile: mostly the
SQLite index, which Berth reads through a memory map of up to 256 MiB, so these pages follow
the index's size and the kernel can drop them), its open file descriptors and threads, the
size of the data directory's index file (with --index-file) and the operations done; every
30 s window gives each operation's p50 and p99 latency. Writes DIR/samples.csv,
DIR/latency.csv, DIR/collections.csv (each collection's time, blobs deleted and phases, as its
report gives them) and DIR/soak.svg (RSS, descriptors and p99 over time), and
prints a summary: RSS and descriptors after the warm-up (first 5 minutes, or the first fifth
of a shorter run), errors, operations per second, p99 of the first and the last windows.
"""

import argparse
import collections
import hashlib
import http.client
import json
import math
import os
import random
import statistics
import threading
import time
import urllib.parse

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar"
STABLE_IMAGES = 32
STABLE_TAGS = 16
CHURN_REPOS = 8
WINDOW_SECS = 30
SAMPLE_SECS = 5


class Client:
    """One keep-alive connection to the registry."""

    def __init__(self, url):
        parsed = urllib.parse.urlparse(url)
        self.host, self.port = parsed.hostname, parsed.port
        self.conn = None

    def request(self, method, path, body=None, headers=None):
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                resp = self.conn.getresponse()
                data = resp.read()
                return resp.status, resp.headers, data
            except (ConnectionError, http.client.HTTPException):
                # A keep-alive connection the server closed: one fresh try.
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


def digest_of(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_blob(client, repo, data):
    status, headers, body = client.request("POST", f"/v2/{repo}/blobs/uploads/")
    if status != 202:
        raise RuntimeError(f"POST upload {repo}: {status} {body[:200]!r}")
    location = headers["Location"]
    sep = "&" if "?" in location else "?"
    path = urllib.parse.urlparse(location)
    target = (path.path + ("?" + path.query if path.query else "")) if path.scheme else location
    status, _, body = client.request(
        "PUT",
        f"{target}{sep}digest={digest_of(data)}",
        body=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    if status != 201:
        raise RuntimeError(f"PUT blob {repo}: {status} {body[:200]!r}")


def push_image(client, repo, tag, rng):
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
         "nonce": rng.getrandbits(64)}
    ).encode()
    layer = rng.randbytes(rng.randint(4, 64) * 1024)
    push_blob(client, repo, config)
    push_blob(client, repo, layer)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": digest_of(config), "size": len(config)},
            "layers": [{"mediaType": LAYER, "digest": digest_of(layer), "size": len(layer)}],
        }
    ).encode()
    put_manifest(client, repo, tag, manifest)
    return {"repo": repo, "manifest": manifest, "digest": digest_of(manifest),
            "layer": digest_of(layer), "layer_size": len(layer)}


def put_manifest(client, repo, reference, manifest):
    status, _, body = client.request(
        "PUT", f"/v2/{repo}/manifests/{reference}", body=manifest,
        headers={"Content-Type": OCI_MANIFEST},
    )
    if status != 201:
        raise RuntimeError(f"PUT manifest {repo}:{reference}: {status} {body[:200]!r}")


class Soak:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.latencies = collections.defaultdict(list)  # op -> [seconds] of this window
        self.windows = []  # (t, op, count, p50, p99)
        self.samples = []  # (t, rss_kib, anon_kib, file_kib, fds, ops, index_kib, threads)
        self.ops = 0
        self.errors = collections.Counter()
        self.first_errors = []
        self.stable = []
        self.tags = {}  # stable tag -> index into self.stable
        self.churn = collections.deque()
        self.collections = []  # (t, seconds, blobs deleted, {phase: seconds})
        self.start = time.monotonic()

    def record(self, op, seconds):
        with self.lock:
            self.latencies[op].append(seconds)
            self.ops += 1

    def error(self, op, e):
        with self.lock:
            self.errors[op] += 1
            if len(self.first_errors) < 20:
                self.first_errors.append(f"{op}: {e}")

    def setup(self):
        client = Client(self.args.url)
        rng = random.Random(1)
        for i in range(STABLE_IMAGES):
            self.stable.append(push_image(client, "soak/stable", f"keep-{i}", rng))
        for t in range(STABLE_TAGS):
            image = self.stable[t % STABLE_IMAGES]
            put_manifest(client, "soak/stable", f"t{t}", image["manifest"])
            self.tags[f"t{t}"] = t % STABLE_IMAGES

    def pull(self, client, rng):
        tag = f"t{rng.randrange(STABLE_TAGS)}"
        status, _, body = client.request(
            "GET", f"/v2/soak/stable/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
        if status != 200:
            raise RuntimeError(f"GET manifest {tag}: {status} {body[:200]!r}")
        layer = json.loads(body)["layers"][0]
        status, _, blob = client.request("GET", f"/v2/soak/stable/blobs/{layer['digest']}")
        if status != 200 or len(blob) != layer["size"]:
            raise RuntimeError(f"GET blob {layer['digest']}: {status}, {len(blob)} bytes")

    def push(self, client, rng):
        repo = f"soak/churn-{rng.randrange(CHURN_REPOS)}"
        image = push_image(client, repo, f"c{rng.randrange(1000)}", rng)
        with self.lock:
            self.churn.append(image)

    def move(self, client, rng):
        tag = f"t{rng.randrange(STABLE_TAGS)}"
        target = rng.randrange(STABLE_IMAGES)
        put_manifest(client, "soak/stable", tag, self.stable[target]["manifest"])

    def delete(self, client, rng):
        with self.lock:
            image = self.churn.popleft() if len(self.churn) > 100 else None
        if image is None:
            return self.push(client, rng)
        status, _, body = client.request(
            "DELETE", f"/v2/{image['repo']}/manifests/{image['digest']}")
        if status != 202:
            raise RuntimeError(f"DELETE {image['repo']}@{image['digest']}: {status} {body[:200]!r}")

    def worker(self, n):
        client = Client(self.args.url)
        rng = random.Random(1000 + n)
        mix = [("pull", 50), ("push", 25), ("move", 15), ("delete", 10)]
        ops, weights = zip(*mix)
        keep = self.args.keep
        while not self.stop.is_set():
            op = rng.choices(ops, weights)[0]
            if keep and len(self.churn) > keep:
                op = "delete"
            started = time.monotonic()
            try:
                getattr(self, op)(client, rng)
            except Exception as e:  # noqa: BLE001 - every failure is counted and kept
                self.error(op, e)
                client.conn = None
                continue
            self.record(op, time.monotonic() - started)

    def collector(self):
        client = Client(self.args.url)
        if self.args.gc_every <= 0:
            return
        while not self.stop.wait(self.args.gc_every):
            started = time.monotonic()
            try:
                status, _, body = client.request(
                    "POST", "/api/v1/gc/runs",
                    body=json.dumps({"dry_run": False, "wait": True, "grace_secs": 120}),
                    headers={"Content-Type": "application/json"})
                if status not in (200, 201):
                    raise RuntimeError(f"gc: {status} {body[:200]!r}")
            except Exception as e:  # noqa: BLE001
                self.error("gc", e)
                continue
            took = time.monotonic() - started
            self.record("gc", took)
            run = json.loads(body)
            phases = (run.get("report") or {}).get("phase_secs", {})
            with self.lock:
                self.collections.append(
                    (started - self.start, took, run.get("blobs", 0), phases))

    def read_proc(self):
        """(VmRSS, RssAnon, RssFile, descriptors, index file KiB, threads) of the server."""
        pid = self.args.pid
        fields = {}
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "RssAnon", "RssFile", "Threads"):
                    fields[key] = int(value.split()[0])
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        index = 0
        if self.args.index_file:
            for suffix in ("", "-wal"):
                try:
                    index += os.stat(self.args.index_file + suffix).st_size // 1024
                except FileNotFoundError:
                    pass
        return (fields.get("VmRSS", 0), fields.get("RssAnon", 0), fields.get("RssFile", 0),
                fds, index, fields.get("Threads", 0))

    def close_window(self, t):
        """Ends the latency window at `t` (the lock held)."""
        for op, values in sorted(self.latencies.items()):
            if values:
                values.sort()
                p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
                self.windows.append((t, op, len(values), statistics.median(values), p99))
        self.latencies.clear()

    def sampler(self):
        next_window = WINDOW_SECS
        while not self.stop.wait(SAMPLE_SECS):
            t = time.monotonic() - self.start
            rss, anon, file, fds, index, threads = self.read_proc()
            with self.lock:
                self.samples.append((t, rss, anon, file, fds, self.ops, index, threads))
                if t >= next_window:
                    next_window += WINDOW_SECS
                    self.close_window(t)

    def run(self):
        self.setup()
        threads = [threading.Thread(target=self.worker, args=(n,), daemon=True)
                   for n in range(self.args.concurrency)]
        threads.append(threading.Thread(target=self.collector, daemon=True))
        threads.append(threading.Thread(target=self.sampler, daemon=True))
        self.start = time.monotonic()
        for t in threads:
            t.start()
        deadline = self.start + self.args.minutes * 60
        while time.monotonic() < deadline:
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        self.stop.set()
        for t in threads:
            t.join(timeout=90)
        with self.lock:
            self.close_window(time.monotonic() - self.start)


def svg(samples, windows, minutes):
    """Three stacked line charts: RSS (MiB), open descriptors, p99 latency (ms) per op."""
    width, height, pad = 760, 180, 48
    span = max(1.0, minutes * 60)
    colours = {"rss": "#333", "anon": "#d62728", "file": "#1f77b4", "index": "#999",
               "pull": "#1f77b4", "push": "#d62728", "move": "#2ca02c", "delete": "#9467bd",
               "gc": "#ff7f0e"}
    memory = {"rss": [(s[0], s[1] / 1024) for s in samples],
              "anon": [(s[0], s[2] / 1024) for s in samples],
              "file": [(s[0], s[3] / 1024) for s in samples]}
    if any(s[6] for s in samples):
        memory["index"] = [(s[0], s[6] / 1024) for s in samples]
    charts = [
        ("server memory (MiB): RSS = anon (heap) + file (mapped index); index file size",
         memory),
        ("open file descriptors", {"fds": [(s[0], s[4]) for s in samples]}),
        ("p99 latency per 30 s (ms, log scale)",
         {op: [(t, max(0.1, p99 * 1000)) for t, o, _, _, p99 in windows if o == op]
          for op in sorted({w[1] for w in windows})}),
    ]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" '
           f'height="{len(charts) * (height + 30)}" font-family="sans-serif" font-size="11">',
           '<rect width="100%" height="100%" fill="white"/>']
    for i, (title, series) in enumerate(charts):
        top = i * (height + 30) + 20
        log = "log" in title
        values = [v for points in series.values() for _, v in points] or [1]
        lo = min(values) if log else 0
        hi = max(values) * 1.1 or 1

        def y(v):
            if log:
                a, b = math.log10(lo), math.log10(hi)
                frac = (math.log10(v) - a) / ((b - a) or 1)
            else:
                frac = v / hi
            return top + height - frac * height

        def x(t):
            return pad + (width - pad - 10) * t / span

        out.append(f'<text x="{pad}" y="{top - 6}" font-weight="bold">{title}</text>')
        out.append(f'<rect x="{pad}" y="{top}" width="{width - pad - 10}" height="{height}" '
                   'fill="none" stroke="#999"/>')
        for frac in (0, 0.5, 1):
            v = (lo * (hi / lo) ** frac) if log else hi * frac
            out.append(f'<text x="{pad - 4}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.3g}</text>')
        for minute in range(0, int(minutes) + 1, max(1, int(minutes) // 6)):
            out.append(f'<text x="{x(minute * 60):.1f}" y="{top + height + 12}" '
                       f'text-anchor="middle">{minute} min</text>')
        for j, (name, points) in enumerate(series.items()):
            colour = colours.get(name, "#333")
            if points:
                path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in points)
                out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" '
                           f'points="{path}"/>')
            if len(series) > 1:
                out.append(f'<text x="{pad + 8 + j * 70}" y="{top + 14}" fill="{colour}">{name}</text>')
    out.append("</svg>")
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--out", required=True)
    parser.add_argument("--gc-every", type=float, default=60,
                        help="seconds between collections; 0 runs none")
    parser.add_argument("--keep", type=int, default=0,
                        help="delete churn images while more than this many are kept (0: never)")
    parser.add_argument("--index-file", default="",
                        help="the SQLite index file, whose size (with its WAL) is sampled")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    soak = Soak(args)
    soak.run()

    with open(os.path.join(args.out, "samples.csv"), "w") as f:
        f.write("seconds,rss_kib,anon_kib,file_kib,fds,ops,index_kib,threads\n")
        for row in soak.samples:
            f.write(",".join(f"{v:.1f}" if isinstance(v, float) else str(v) for v in row) + "\n")
    with open(os.path.join(args.out, "latency.csv"), "w") as f:
        f.write("seconds,op,count,p50_ms,p99_ms\n")
        for t, op, n, p50, p99 in soak.windows:
            f.write(f"{t:.1f},{op},{n},{p50 * 1000:.2f},{p99 * 1000:.2f}\n")
    with open(os.path.join(args.out, "collections.csv"), "w") as f:
        # Where each collection's time went: a phase growing run by run is what slows it.
        phases = sorted({p for c in soak.collections for p in c[3]})
        f.write(",".join(["seconds", "took_s", "blobs_deleted"] + phases) + "\n")
        for t, took, deleted, secs in soak.collections:
            f.write(",".join([f"{t:.1f}", f"{took:.3f}", str(deleted)]
                             + [str(secs.get(p, "")) for p in phases]) + "\n")
    with open(os.path.join(args.out, "soak.svg"), "w") as f:
        f.write(svg(soak.samples, soak.windows, args.minutes))

    warm = min(300, args.minutes * 60 / 5)
    after = [s for s in soak.samples if s[0] >= warm] or soak.samples
    rss = [s[1] / 1024 for s in after]
    anon = [s[2] / 1024 for s in after]
    mapped = [s[3] / 1024 for s in after]
    fds = [s[4] for s in after]
    threads = [s[7] for s in after]
    elapsed = soak.samples[-1][0] if soak.samples else 1
    print(f"minutes {args.minutes:g}, concurrency {args.concurrency}, "
          f"operations {soak.ops} ({soak.ops / elapsed:.0f}/s)")
    print(f"after warm-up ({warm:.0f} s): RSS {min(rss):.1f}-{max(rss):.1f} MiB "
          f"(first {rss[0]:.1f}, last {rss[-1]:.1f}); of it anonymous {min(anon):.1f}-"
          f"{max(anon):.1f} MiB (first {anon[0]:.1f}, last {anon[-1]:.1f}) and file pages "
          f"{min(mapped):.1f}-{max(mapped):.1f} MiB (first {mapped[0]:.1f}, last {mapped[-1]:.1f})")
    print(f"descriptors {min(fds)}-{max(fds)} (first {fds[0]}, last {fds[-1]}); "
          f"threads {min(threads)}-{max(threads)} (first {threads[0]}, last {threads[-1]}); "
          f"churn images kept at the end {len(soak.churn)}"
          + (f"; index file {after[0][6] / 1024:.1f} -> {after[-1][6] / 1024:.1f} MiB"
             if after[-1][6] else ""))
    for op in ("pull", "push", "move", "delete", "gc"):
        rows = [w for w in soak.windows if w[1] == op]
        if rows:
            p99s = [w[4] * 1000 for w in rows]
            print(f"{op:>6}: p99 first window {p99s[0]:.1f} ms, last {p99s[-1]:.1f} ms, "
                  f"median of windows {statistics.median(p99s):.1f} ms, max {max(p99s):.1f} ms")
    total_errors = sum(soak.errors.values())
    print(f"errors: {total_errors} {dict(soak.errors)}")
    for line in soak.first_errors:
        print(f"  {line}")
    print(f"written: {args.out}/samples.csv, latency.csv, collections.csv, soak.svg")
    raise SystemExit(1 if total_errors else 0)


if __name__ == "__main__":
    main()
