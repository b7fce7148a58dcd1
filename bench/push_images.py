#!/usr/bin/env python3
"""Push N small, real container images to a registry: Python 3 standard library only.

    python3 bench/push_images.py --registry http://127.0.0.1:PORT [--images N] [--repos R]
        [--concurrency C] [--layer-kib K] [--seed S] [--prefix P] [--state FILE]
        [--gen-workers G]

Defaults: 600 images, 10 repositories, 16 workers, 256 KiB, one generating process per CPU.

Each image is an OCI image manifest with an image config (`rootfs.diff_ids` the sha256 of
each uncompressed layer) and two gzip tar layers (`application/vnd.oci.image.layer.v1.tar+gzip`):

  1. a Debian 12 base: `etc/os-release`, `var/lib/dpkg/status` listing 50 installed packages
     (some with a `Source:`) whose versions carry the image's number, their
     `var/lib/dpkg/info/*.list`, and filler (`usr/share/doc/*/copyright` text, `usr/bin/*`
     executables of pseudo-random bytes, not ELF) up to about --layer-kib KiB of tar;
  2. an app layer of a few KiB with a file of its own.

So every layer of every image is new (nothing is deduplicated between images), and a scanner
must decompress and read each one; a scan of one image finds the 50 dpkg packages. The images
go to R repositories (`P/many0` ... `P/many{R-1}`, image i to repository i mod R, tag
`img{i}`), pushed by C worker threads, each with its own keep-alive connection: per image,
each blob (layers, then config) by a monolithic upload (`POST /v2/<repo>/blobs/uploads/`,
then a `PUT` to its Location with `digest=` added to the query and the blob as body; the
Location may be absolute or relative and may carry a query of its own), then
`PUT /v2/<repo>/manifests/img{i}`: 7 requests an image.

Every image's bytes are generated (deterministically from --seed, by --gen-workers
processes) and held in memory before the clock starts (~100 KiB an image at the default
size), so the same seed pushes the same bytes on every run. Every request is timed. Prints
one JSON object on stdout: images pushed, seconds, images_per_sec, requests, p50_ms, p90_ms
and p99_ms over all requests, errors (an answer other than the one expected, 202 to a POST
and 201 to a PUT, or a connection error) and the first one, bytes and MB/s pushed, the
median base layer's size (tar and gzip), the client's own CPU seconds during the pushes, the
CPU seconds the whole machine was busy meanwhile (Linux `/proc/stat`: this process, the
registry and anything else running) and the seconds spent generating. Exits 1 when any
request failed. --state FILE writes the images pushed (`{"many": [{"repo", "tag",
"manifest_digest"}]}`, as regbench's state file does) for a later look at one of them.
No authentication; meant for a registry on loopback.
"""

import argparse
import concurrent.futures
import gzip
import hashlib
import http.client
import io
import json
import os
import random
import resource
import sys
import tarfile
import threading
import time
import urllib.parse

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"

OS_RELEASE = b"""PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
SUPPORT_URL="https://www.debian.org/support"
BUG_REPORT_URL="https://bugs.debian.org/"
"""

# (package, version, source or None, section, architecture): a Debian 12 base.
PACKAGES = [
    ("adduser", "3.134", None, "admin", "all"),
    ("apt", "2.6.1", None, "admin", "amd64"),
    ("base-files", "12.4+deb12u5", None, "admin", "amd64"),
    ("base-passwd", "3.6.1", None, "admin", "amd64"),
    ("bash", "5.2.15-2+b2", None, "shells", "amd64"),
    ("bsdutils", "1:2.38.1-5+deb12u1", "util-linux (2.38.1-5+deb12u1)", "utils", "amd64"),
    ("coreutils", "9.1-1", None, "utils", "amd64"),
    ("dash", "0.5.12-2", None, "shells", "amd64"),
    ("debconf", "1.5.82", None, "admin", "all"),
    ("debian-archive-keyring", "2023.3+deb12u1", None, "misc", "all"),
    ("debianutils", "5.7-0.5~deb12u1", None, "utils", "amd64"),
    ("diffutils", "1:3.8-4", None, "utils", "amd64"),
    ("dpkg", "1.21.22", None, "admin", "amd64"),
    ("e2fsprogs", "1.47.0-2", None, "admin", "amd64"),
    ("findutils", "4.9.0-4", None, "utils", "amd64"),
    ("gcc-12-base", "12.2.0-14", "gcc-12", "libs", "amd64"),
    ("gpgv", "2.2.40-1.1", "gnupg2", "utils", "amd64"),
    ("grep", "3.8-5", None, "utils", "amd64"),
    ("gzip", "1.12-1", None, "utils", "amd64"),
    ("hostname", "3.23+nmu1", None, "admin", "amd64"),
    ("init-system-helpers", "1.65.2", None, "admin", "all"),
    ("libacl1", "2.3.1-3", "acl", "libs", "amd64"),
    ("libapt-pkg6.0", "2.6.1", "apt", "libs", "amd64"),
    ("libattr1", "1:2.5.1-4", "attr", "libs", "amd64"),
    ("libaudit1", "1:3.0.9-1", "audit", "libs", "amd64"),
    ("libblkid1", "2.38.1-5+deb12u1", "util-linux", "libs", "amd64"),
    ("libbz2-1.0", "1.0.8-5+b1", "bzip2 (1.0.8-5)", "libs", "amd64"),
    ("libc-bin", "2.36-9+deb12u4", "glibc", "libs", "amd64"),
    ("libc6", "2.36-9+deb12u4", "glibc", "libs", "amd64"),
    ("libcap-ng0", "0.8.3-1+b3", "libcap-ng (0.8.3-1)", "libs", "amd64"),
    ("libcap2", "1:2.66-4", "libcap2", "libs", "amd64"),
    ("libcom-err2", "1.47.0-2", "e2fsprogs", "libs", "amd64"),
    ("libcrypt1", "1:4.4.33-2", "libxcrypt", "libs", "amd64"),
    ("libdb5.3", "5.3.28+dfsg2-1", "db5.3", "libs", "amd64"),
    ("libext2fs2", "1.47.0-2", "e2fsprogs", "libs", "amd64"),
    ("libffi8", "3.4.4-1", "libffi", "libs", "amd64"),
    ("libgcc-s1", "12.2.0-14", "gcc-12", "libs", "amd64"),
    ("libgcrypt20", "1.10.1-3", None, "libs", "amd64"),
    ("libgmp10", "2:6.2.1+dfsg1-1.1", "gmp", "libs", "amd64"),
    ("libgnutls30", "3.7.9-2+deb12u2", "gnutls28", "libs", "amd64"),
    ("liblz4-1", "1.9.4-1", "lz4", "libs", "amd64"),
    ("liblzma5", "5.4.1-0.2", "xz-utils", "libs", "amd64"),
    ("libmd0", "1.0.4-2", "libmd", "libs", "amd64"),
    ("libpcre2-8-0", "10.42-1", "pcre2", "libs", "amd64"),
    ("libselinux1", "3.4-1+b6", "libselinux (3.4-1)", "libs", "amd64"),
    ("libssl3", "3.0.11-1~deb12u2", "openssl", "libs", "amd64"),
    ("libstdc++6", "12.2.0-14", "gcc-12", "libs", "amd64"),
    ("libsystemd0", "252.22-1~deb12u1", "systemd", "libs", "amd64"),
    ("libzstd1", "1.5.4+dfsg2-5", "libzstd", "libs", "amd64"),
    ("zlib1g", "1:1.2.13.dfsg-1", "zlib", "libs", "amd64"),
]

WORDS = (
    "the software is provided as is without warranty of any kind express or implied "
    "including but not limited to the warranties of merchantability fitness for a "
    "particular purpose and noninfringement in no event shall the authors or copyright "
    "holders be liable for any claim damages or other liability whether in an action of "
    "contract tort or otherwise arising from out of or in connection with the software"
).split()


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def dpkg_status(n, rng):
    """The status file of image n: every version carries n, so each image's differs."""
    out = []
    for name, version, source, section, arch in PACKAGES:
        v = f"{version}+bench{n}"
        stanza = [
            f"Package: {name}",
            "Status: install ok installed",
            "Priority: required" if section != "libs" else "Priority: optional",
            f"Section: {section}",
            f"Installed-Size: {rng.randint(40, 9000)}",
            "Maintainer: Debian Bench Maintainers <bench@lists.debian.org>",
            f"Architecture: {arch}",
            "Multi-Arch: same" if section == "libs" else "Multi-Arch: foreign",
        ]
        if source:
            stanza.append(f"Source: {source}")
        stanza += [
            f"Version: {v}",
            "Depends: libc6 (>= 2.34)",
            f"Description: {name} for the bench image {n}",
            " " + " ".join(rng.choice(WORDS) for _ in range(24)),
            " .",
            " " + " ".join(rng.choice(WORDS) for _ in range(16)),
            f"Homepage: https://packages.debian.org/{name}",
        ]
        out.append("\n".join(stanza) + "\n")
    return "\n".join(out).encode()


class TarBuilder:
    def __init__(self, mtime):
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.GNU_FORMAT)
        self.mtime = mtime
        self.dirs = set()

    def _dir(self, path):
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self.dirs:
                self.dirs.add(d)
                info = tarfile.TarInfo(d)
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                info.mtime = self.mtime
                self.tar.addfile(info)

    def add(self, path, data, mode=0o644):
        self._dir(path)
        info = tarfile.TarInfo(path)
        info.size = len(data)
        info.mode = mode
        info.mtime = self.mtime
        self.tar.addfile(info, io.BytesIO(data))

    def size(self):
        return self.buf.tell()

    def finish(self):
        self.tar.close()
        return self.buf.getvalue()


def base_layer(n, layer_bytes, rng):
    t = TarBuilder(1_700_000_000 + n)
    t.add("etc/os-release", OS_RELEASE)
    t.add("etc/debian_version", b"12.5\n")
    t.add("etc/hostname", f"bench-{n}\n".encode())
    t.add("var/lib/dpkg/status", dpkg_status(n, rng))
    for name, *_ in PACKAGES:
        t.add(f"var/lib/dpkg/info/{name}.list",
              f"/.\n/usr\n/usr/bin\n/usr/bin/{name}\n/usr/share/doc/{name}\n".encode())
    # Filler to about layer_bytes of tar: doc text (compresses well) and executables of
    # pseudo-random bytes (do not), round robin over the packages.
    i = 0
    while t.size() < layer_bytes - 2048:
        name = PACKAGES[i % len(PACKAGES)][0]
        left = layer_bytes - t.size() - 1536
        if i % 2 == 0:
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(300, 900)))
            t.add(f"usr/share/doc/{name}/copyright.{i}", words.encode()[:max(left, 1)])
        else:
            size = min(rng.randint(2048, 6144), max(left, 1))
            t.add(f"usr/bin/{name}-{i}", rng.randbytes(size), mode=0o755)
        i += 1
    return t.finish()


def app_layer(n, rng):
    t = TarBuilder(1_700_000_000 + n)
    t.add(f"app/build-{n}.txt", f"bench image {n} built {rng.getrandbits(64):016x}\n".encode())
    t.add("app/main.sh", b"#!/bin/sh\nexec cat /app/build-*.txt\n", mode=0o755)
    t.add("app/data.bin", rng.randbytes(2048))
    return t.finish()


def make_image(n, args):
    rng = random.Random(f"{args.seed}/{n}")
    tars = [base_layer(n, args.layer_kib * 1024, rng), app_layer(n, rng)]
    layers = [gzip.compress(t, compresslevel=6, mtime=0) for t in tars]
    config = json.dumps({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/app/main.sh"],
            "Labels": {"bench.image": str(n)},
        },
        "rootfs": {"type": "layers", "diff_ids": [sha256(t) for t in tars]},
        "history": [
            {"created": "2024-01-01T00:00:00Z", "created_by": "/bin/sh -c #(nop) ADD rootfs"},
            {"created": "2024-01-01T00:00:01Z", "created_by": "COPY app /app"},
        ],
    }, separators=(",", ":")).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [
            {"mediaType": OCI_LAYER_GZIP, "digest": sha256(b), "size": len(b)} for b in layers
        ],
    }, separators=(",", ":")).encode()
    return {
        "repo": f"{args.prefix}/many{n % args.repos}",
        "tag": f"img{n}",
        "blobs": [(sha256(b), b) for b in layers] + [(sha256(config), config)],
        "manifest": manifest,
        "manifest_digest": sha256(manifest),
        "base_tar_bytes": len(tars[0]),
    }


class HttpError(Exception):
    pass


class Pusher:
    """One worker's connections (by host:port) and the latencies of its requests."""

    def __init__(self, base):
        self.base = base
        self.conns = {}
        self.latencies = []

    def request(self, method, url, body=None, headers=None, ok=(200, 201, 202)):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http":
            raise HttpError(f"{method} {url}: only http:// is supported")
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        conn = self.conns.get(parts.netloc)
        for attempt in (0, 1):
            if conn is None:
                conn = http.client.HTTPConnection(parts.netloc, timeout=120)
                self.conns[parts.netloc] = conn
            t0 = time.perf_counter()
            try:
                conn.request(method, path, body=body, headers=headers or {})
                resp = conn.getresponse()
                payload = resp.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                # A keep-alive connection the server closed: one retry on a new one.
                conn.close()
                conn = None
                del self.conns[parts.netloc]
                if attempt == 1:
                    raise HttpError(f"{method} {path}: {e!r}") from e
                continue
            self.latencies.append(time.perf_counter() - t0)
            if resp.status not in ok:
                raise HttpError(
                    f"{method} {path}: {resp.status} {resp.reason}: {payload[:300]!r}")
            if resp.getheader("Connection", "").lower() == "close":
                conn.close()
                del self.conns[parts.netloc]
            return resp
        raise AssertionError("unreachable")

    def push_image(self, img):
        repo = img["repo"]
        for digest, data in img["blobs"]:
            resp = self.request("POST", f"{self.base}/v2/{repo}/blobs/uploads/",
                                headers={"Content-Length": "0"}, ok=(202,))
            location = resp.getheader("Location")
            if not location:
                raise HttpError(f"POST /v2/{repo}/blobs/uploads/: 202 without a Location")
            # Absolute or relative (to the registry): resolved against the registry's URL.
            session = urllib.parse.urljoin(self.base + "/", location)
            sep = "&" if urllib.parse.urlsplit(session).query else "?"
            url = f"{session}{sep}digest={urllib.parse.quote(digest, safe='')}"
            self.request("PUT", url, body=data, headers={
                "Content-Type": "application/octet-stream",
                "Content-Length": str(len(data)),
            }, ok=(201,))
        self.request("PUT", f"{self.base}/v2/{repo}/manifests/{img['tag']}",
                     body=img["manifest"], headers={
                         "Content-Type": OCI_MANIFEST,
                         "Content-Length": str(len(img["manifest"])),
                     }, ok=(201,))

    def close(self):
        for conn in self.conns.values():
            conn.close()


def machine_busy_seconds():
    """CPU seconds all CPUs have spent busy since boot (Linux /proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def percentile(sorted_values, q):
    if not sorted_values:
        return 0.0
    k = max(0, min(len(sorted_values) - 1, round(q * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--registry", required=True, help="http://127.0.0.1:PORT")
    p.add_argument("--images", type=int, default=600)
    p.add_argument("--repos", type=int, default=10)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--layer-kib", type=int, default=256,
                   help="the base layer's size as a tar, KiB (default 256)")
    p.add_argument("--seed", default="berth-bench")
    p.add_argument("--prefix", default="bench")
    p.add_argument("--state", help="write the pushed images here (JSON)")
    p.add_argument("--gen-workers", type=int, default=os.cpu_count() or 1,
                   help="processes generating the images before the clock starts "
                        "(default: one per CPU)")
    args = p.parse_args()
    base = args.registry.rstrip("/")

    t0 = time.perf_counter()
    if args.gen_workers > 1 and args.images > 1:
        with concurrent.futures.ProcessPoolExecutor(max_workers=args.gen_workers) as pool:
            images = list(pool.map(make_image, range(args.images),
                                   [args] * args.images, chunksize=16))
    else:
        images = [make_image(n, args) for n in range(args.images)]
    generated = time.perf_counter() - t0
    pushed_bytes = sum(len(b) for img in images for _, b in img["blobs"]) + sum(
        len(img["manifest"]) for img in images)

    next_image = iter(range(len(images)))
    lock = threading.Lock()
    errors = []
    done = []

    def worker():
        pusher = Pusher(base)
        try:
            while True:
                with lock:
                    n = next(next_image, None)
                if n is None:
                    return pusher.latencies
                try:
                    pusher.push_image(images[n])
                    with lock:
                        done.append(n)
                except (HttpError, OSError, http.client.HTTPException) as e:
                    with lock:
                        errors.append(f"image {n}: {e}")
                    pusher.close()
                    pusher.conns = {}
        finally:
            pusher.close()

    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    busy0 = machine_busy_seconds()
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.concurrency)) as pool:
        futures = [pool.submit(worker) for _ in range(max(1, args.concurrency))]
        latencies = sorted(l for f in futures for l in f.result())
    seconds = time.perf_counter() - start
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    busy1 = machine_busy_seconds()

    if args.state:
        done.sort()
        with open(args.state, "w") as f:
            json.dump({"many": [{"repo": images[n]["repo"], "tag": images[n]["tag"],
                                 "manifest_digest": images[n]["manifest_digest"]}
                                for n in done]}, f)
    base_layers = sorted(len(img["blobs"][0][1]) for img in images)
    base_tars = sorted(img["base_tar_bytes"] for img in images)
    print(json.dumps({
        "images": len(done),
        "repos": args.repos,
        "concurrency": args.concurrency,
        "seconds": round(seconds, 3),
        "images_per_sec": round(len(done) / seconds, 2) if seconds else 0.0,
        "requests": len(latencies),
        "requests_per_sec": round(len(latencies) / seconds, 1) if seconds else 0.0,
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p90_ms": round(percentile(latencies, 0.90) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "bytes": pushed_bytes,
        "mb_per_sec": round(pushed_bytes / 1e6 / seconds, 2) if seconds else 0.0,
        "base_layer_tar_kib_median": round(base_tars[len(base_tars) // 2] / 1024, 1)
        if base_tars else 0,
        "base_layer_gzip_kib_median": round(base_layers[len(base_layers) // 2] / 1024, 1)
        if base_layers else 0,
        "client_cpu_seconds": round(cpu1.ru_utime + cpu1.ru_stime
                                    - cpu0.ru_utime - cpu0.ru_stime, 2),
        "machine_cpu_seconds": round(busy1 - busy0, 2) if busy0 is not None else None,
        "generate_seconds": round(generated, 2),
    }))
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
