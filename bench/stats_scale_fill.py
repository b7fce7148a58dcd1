#!/usr/bin/env python3
"""Fills a migrated, empty Berth index with a registry at scale, for bench/stats-scale.sh.

REPOS repositories of TAGS tags each, every tag on its own image manifest (linux, amd64 and
arm64 alternating; a config, a layer of its own and a base layer shared by the repository's
images), pushed in order over DAYS days ending today; then PULLS pull events over those days
(repositories by a Zipf-like popularity, tags favouring the newest pushed by then), counted
the way Berth's flush writes them: per repository and day (pulls, HEADs, pushes, bytes
out), per tag and day, per identity and day, into the running totals of repositories,
manifests and tags, and into the flush's rollups (the registry per day, each tag's pulls
ever); and the storage recorded at the first flush of each day (the registry's physical
bytes, each repository's deduplicated bytes). The index's own triggers count manifests,
tags and blobs as the rows go in.

Rows are what Berth writes on a push and a flush: manifest payloads are real OCI manifest
JSON whose digest is their sha256; blob digests are sha256 of a name (the bench reads the
index only, so no object is written to the blob store).

  stats_scale_fill.py --sqlite PATH        # writes into the SQLite index at PATH
  stats_scale_fill.py --postgres           # prints COPY statements for psql on stdout
"""

import argparse
import hashlib
import json
import math
import random
import sys
import time
from collections import Counter, defaultdict

DAY = 86_400
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def sha(text):
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def generate(repos, tags, pulls, days, seed):
    """Yields (table, columns, rows) in an order the foreign keys accept."""
    rng = random.Random(seed)
    today = int(time.time()) // DAY
    first_day = today - days + 1
    start = first_day * DAY

    repositories, blobs, links, manifests, references, tag_rows = [], [], [], [], [], []
    # Per manifest: when it was pushed; per repository: the bytes it gained per day.
    pushed_at = {}
    pushed_bytes = defaultdict(Counter)
    pushes_per_day = defaultdict(Counter)
    manifest_id = 0
    for r in range(1, repos + 1):
        name = f"team{r % 50:02d}/app{r:04d}"
        base = sha(f"base {r}")
        base_size = rng.randint(5, 50) * 1_000_000
        blobs.append((base, base_size, start))
        links.append((r, base, start))
        pushed_bytes[r][first_day] += base_size
        last_push = start
        for i in range(tags):
            manifest_id += 1
            # Pushed in order over the days, at some second of its day.
            day = first_day + (i * days) // tags
            at = day * DAY + rng.randrange(DAY)
            last_push = max(last_push, at)
            architecture = "arm64" if i % 2 else "amd64"
            config, config_size = sha(f"config {r} {i}"), rng.randint(1_000, 4_000)
            layer, layer_size = sha(f"layer {r} {i}"), rng.randint(100_000, 20_000_000)
            payload = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": OCI_CONFIG, "digest": config, "size": config_size},
                    "layers": [
                        {"mediaType": OCI_LAYER, "digest": base, "size": base_size},
                        {"mediaType": OCI_LAYER, "digest": layer, "size": layer_size},
                    ],
                },
                separators=(",", ":"),
            ).encode()
            digest = "sha256:" + hashlib.sha256(payload).hexdigest()
            total = len(payload) + config_size + base_size + layer_size
            blobs.append((config, config_size, at))
            blobs.append((layer, layer_size, at))
            links.append((r, config, at))
            links.append((r, layer, at))
            manifests.append(
                [manifest_id, r, digest, OCI_MANIFEST, config, "linux", architecture,
                 len(payload), total, payload, at, None, 0]
            )
            for d in (config, base, layer):
                references.append((manifest_id, d, "blob"))
            tag = f"1.{i // 100}.{i % 100}"
            tag_rows.append([r, tag, manifest_id, at, at, None])
            pushed_at[(r, i)] = at
            pushed_bytes[r][day] += config_size + layer_size
            pushes_per_day[r][day] += 1
        repositories.append([r, name, start, tags, 0, last_push, None, ""])

    # Pull events: a repository by popularity, a tag among those pushed by that day.
    weights = [1 / (k + 1) ** 0.8 for k in range(repos)]
    cumulative, total = [], 0.0
    for w in weights:
        total += w
        cumulative.append(total)
    repository_pulls = Counter()  # (repository, day)
    tag_pulls = Counter()  # (repository, tag index, day)
    last_pull = {}
    for _ in range(pulls):
        day = first_day + rng.randrange(days)
        x = rng.random() * total
        lo, hi = 0, repos - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if cumulative[mid] < x:
                lo = mid + 1
            else:
                hi = mid
        r = lo + 1
        newest = min(tags - 1, ((day - first_day + 1) * tags) // days - 1)
        newest = max(newest, 0)
        i = max(0, newest - int(rng.expovariate(0.05)))
        repository_pulls[(r, day)] += 1
        tag_pulls[(r, i, day)] += 1
        key = (r, i)
        # Never before the push, on the day of the push.
        at = max(day * DAY + rng.randrange(DAY), pushed_at[key] + 1)
        last_pull[key] = max(last_pull.get(key, 0), at)

    by_manifest = Counter()
    for (r, i, _day), n in tag_pulls.items():
        by_manifest[(r, i)] += n
    for row in manifests:
        key = (row[1], (row[0] - 1) % tags)
        row[12] = by_manifest.get(key, 0)
        row[11] = last_pull.get(key)
    for row in tag_rows:
        key = (row[0], (row[2] - 1) % tags)
        row[5] = last_pull.get(key)
    for row in repositories:
        r = row[0]
        row[4] = sum(by_manifest.get((r, i), 0) for i in range(tags))
        pulled = [last_pull[(r, i)] for i in range(tags) if (r, i) in last_pull]
        row[6] = max(pulled) if pulled else None

    yield "repositories", ["id", "name", "created_at", "push_count", "pull_count",
                           "last_push_at", "last_pull_at", "description"], repositories
    yield "blobs", ["digest", "size", "created_at"], blobs
    yield "repository_blobs", ["repository_id", "digest", "linked_at"], links
    yield "manifests", ["id", "repository_id", "digest", "media_type", "config_digest", "os",
                        "architecture", "size", "total_size", "payload", "pushed_at",
                        "last_pulled_at", "pull_count"], manifests
    yield "manifest_references", ["manifest_id", "digest", "kind"], references
    yield "tags", ["repository_id", "name", "manifest_id", "pushed_at", "updated_at",
                   "last_pulled_at"], tag_rows

    usage = []
    days_used = set(repository_pulls) | {(r, d) for r in pushes_per_day for d in pushes_per_day[r]}
    for (r, day) in sorted(days_used):
        n = repository_pulls.get((r, day), 0)
        # Clients check for a newer manifest (HEAD) about twice per pull; each pull fetches
        # what it lacks, about a layer.
        usage.append((r, day, n, 2 * n, pushes_per_day[r][day], n * 5_000_000))
    yield "repository_usage", ["repository_id", "day", "pulls", "heads", "pushes",
                               "bytes_out"], usage
    yield "tag_usage", ["repository_id", "tag", "day", "pulls"], [
        (r, f"1.{i // 100}.{i % 100}", day, n) for (r, i, day), n in sorted(tag_pulls.items())
    ]
    # The flush's rollups: the registry's days, and each tag's pulls ever.
    registry_days = defaultdict(lambda: [0, 0, 0, 0])
    for (_r, day, pulls_n, heads, pushes, bytes_out) in usage:
        for k, v in enumerate((pulls_n, heads, pushes, bytes_out)):
            registry_days[day][k] += v
    yield "registry_usage", ["day", "pulls", "heads", "pushes", "bytes_out"], [
        (day, *registry_days[day]) for day in sorted(registry_days)
    ]
    tags_ever = Counter()
    for (r, i, _day), n in tag_pulls.items():
        tags_ever[(r, i)] += n
    yield "tag_pulls", ["repository_id", "tag", "pulls"], [
        (r, f"1.{i // 100}.{i % 100}", n) for (r, i), n in sorted(tags_ever.items())
    ]
    subjects = [("anonymous", r, day, "anonymous", n, 0)
                for (r, day), n in sorted(repository_pulls.items())]
    subjects += [("user:1", r, day, "admin", 0, n)
                 for r in sorted(pushes_per_day) for day, n in sorted(pushes_per_day[r].items())]
    yield "subject_usage", ["subject", "repository_id", "day", "name", "pulls", "pushes"], subjects

    # The storage recorded at the first flush of each day: what was pushed before that day.
    registry_storage, repository_storage = [], []
    running = Counter()
    for day in range(first_day, today + 1):
        for r in range(1, repos + 1):
            repository_storage.append((r, day, running[r]))
        registry_storage.append((day, sum(running.values())))
        for r in range(1, repos + 1):
            running[r] += pushed_bytes[r].get(day, 0)
    yield "registry_storage", ["day", "bytes"], registry_storage
    yield "repository_storage", ["repository_id", "day", "bytes"], repository_storage


def copy_field(value):
    if value is None:
        return "\\N"
    if isinstance(value, bytes):
        return "\\\\x" + value.hex()
    text = str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def to_postgres(tables, out):
    out.write("BEGIN;\n")
    for table, columns, rows in tables:
        out.write(f"COPY {table} ({', '.join(columns)}) FROM STDIN;\n")
        for row in rows:
            out.write("\t".join(copy_field(v) for v in row))
            out.write("\n")
        out.write("\\.\n")
        print(f"{table}: {len(rows)} rows", file=sys.stderr)
    for table in ("repositories", "manifests"):
        out.write(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
            f"(SELECT MAX(id) FROM {table}));\n"
        )
    out.write("COMMIT;\nANALYZE;\n")


def to_sqlite(tables, path):
    import sqlite3

    db = sqlite3.connect(path)
    db.execute("PRAGMA synchronous = OFF")
    db.execute("BEGIN")
    for table, columns, rows in tables:
        marks = ", ".join("?" for _ in columns)
        db.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
        print(f"{table}: {len(rows)} rows", file=sys.stderr)
    db.commit()
    db.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--sqlite", metavar="PATH")
    target.add_argument("--postgres", action="store_true")
    parser.add_argument("--repos", type=int, default=1000)
    parser.add_argument("--tags", type=int, default=1000)
    parser.add_argument("--pulls", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    tables = generate(args.repos, args.tags, args.pulls, args.days, args.seed)
    if args.postgres:
        to_postgres(tables, sys.stdout)
    else:
        to_sqlite(tables, args.sqlite)


if __name__ == "__main__":
    main()
