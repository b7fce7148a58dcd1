#!/usr/bin/env python3
"""Python registry clients for Berth's end-to-end suite: oras-py and python-dxf.

Called by run.sh with the test venv's interpreter:

    py_clients.py --registry 127.0.0.1:5000 --namespace e2e/r123 --workdir /tmp/x --groups oras,dxf

Talks plain HTTP to the registry. Prints one line per check, "ok - <client>: <check>" or
"not ok - <client>: <check>: <reason>", and exits 1 if any check failed.
"""
import argparse
import hashlib
import json
import os
import sys
import traceback

import requests

HTTP_TIMEOUT = 120  # seconds, for the requests this file makes itself

ART_TYPE = "application/vnd.berth.e2e.artifact.v1"
SIG_TYPE = "application/vnd.berth.e2e.signature.v1"
FILE_TYPE = "application/vnd.berth.e2e.file.v1"
CFG_TYPE = "application/vnd.berth.e2e.config.v1+json"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
TITLE = "org.opencontainers.image.title"

failed = 0


class CheckFailed(Exception):
    pass


def expect(cond, msg):
    if not cond:
        raise CheckFailed(msg)


def check(client, what, fn, *args):
    """Run fn(*args); any exception is a failure with a one-line reason."""
    global failed
    try:
        fn(*args)
        print(f"ok - {client}: {what}", flush=True)
    except Exception as e:  # noqa: BLE001  every error is a check result
        reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
        if not isinstance(e, CheckFailed):
            reason = f"{type(e).__name__}: {reason}"
            traceback.print_exc(file=sys.stderr)
        print(f"not ok - {client}: {what}: {reason[:300]}", flush=True)
        failed += 1


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def file_digest(path: str) -> str:
    with open(path, "rb") as f:
        return digest_of(f.read())


def write(path: str, data: bytes) -> str:
    with open(path, "wb") as f:
        f.write(data)
    return path


# --------------------------------------------------------------------------- oras-py
class OrasChecks:
    def __init__(self, reg, ns, work):
        import oras.client
        import oras.oci

        self.oci = oras.oci
        self.reg = reg
        self.name = f"{ns}/oras"                 # repository name
        self.repo = f"{reg}/{self.name}"         # oras-py reference prefix
        self.work = work
        self.c = oras.client.OrasClient(hostname=reg, insecure=True)
        self.s = {}                              # state shared between checks
        # oras-py refuses files outside the current directory
        os.chdir(work)
        write("payload.bin", os.urandom(300_000))
        write("notes.txt", f"berth e2e notes for {ns}\n".encode())
        write("empty.json", b"{}")
        write("sig.bin", os.urandom(1_000))

    def url(self, path):
        return f"http://{self.reg}/v2/{self.name}/{path}"

    def raw_manifest(self, ref):
        r = self.c.session.get(self.url(f"manifests/{ref}"), timeout=HTTP_TIMEOUT,
                               headers={"Accept": f"{MANIFEST_TYPE}, {INDEX_TYPE}"})
        expect(r.status_code == 200, f"GET manifest {ref} -> {r.status_code}")
        return r

    def desc(self, path, media_type, title=True):
        d = {"mediaType": media_type, "digest": file_digest(path), "size": os.path.getsize(path)}
        if title:
            d["annotations"] = {TITLE: os.path.basename(path)}
        return d

    def upload(self, container, path, desc):
        r = self.c.upload_blob(path, container, desc)
        expect(r.status_code in (200, 201), f"blob {desc['digest'][:19]} upload -> {r.status_code}")

    def put_manifest(self, manifest, ref):
        """PUT via oras-py; returns (digest of the bytes sent, response)."""
        container = self.c.get_container(f"{self.repo}{ref}")
        r = self.c.upload_manifest(manifest, container)
        expect(r.status_code == 201, f"manifest PUT -> {r.status_code}: {r.text[:200]}")
        # requests serialises json= with json.dumps defaults: these are the bytes sent
        body = json.dumps(manifest).encode()
        got = r.headers.get("Docker-Content-Digest")
        expect(got in (None, digest_of(body)), f"Docker-Content-Digest {got} != {digest_of(body)}")
        return digest_of(body), len(body), r

    def push_artifact(self):
        """OCI 1.1 artifact: artifactType, empty config, two file layers, tagged 'art'."""
        container = self.c.get_container(f"{self.repo}:art")
        cfg = self.desc("empty.json", EMPTY_TYPE, title=False)
        layers = [self.desc("payload.bin", FILE_TYPE), self.desc("notes.txt", FILE_TYPE)]
        for path, d in (("empty.json", cfg), ("payload.bin", layers[0]), ("notes.txt", layers[1])):
            self.upload(container, path, d)
        manifest = {"schemaVersion": 2, "mediaType": MANIFEST_TYPE, "artifactType": ART_TYPE,
                    "config": cfg, "layers": layers,
                    "annotations": {"org.opencontainers.image.created": "1970-01-01T00:00:00Z"}}
        dg, size, _ = self.put_manifest(manifest, ":art")
        self.s["art"] = (dg, size)
        served = self.raw_manifest("art")
        expect(digest_of(served.content) == dg, f"served manifest {digest_of(served.content)} != pushed {dg}")

    def push_files(self):
        """High-level push: files with a custom config media type, tagged 'files' and 'extra'."""
        for tag in ("files", "extra"):
            r = self.c.push(target=f"{self.repo}:{tag}", files=[f"notes.txt:{FILE_TYPE}"],
                            manifest_config=f"empty.json:{CFG_TYPE}", quiet=True)
            expect(r.status_code == 201, f"push {tag}: manifest PUT -> {r.status_code}")
        m = self.c.get_manifest(f"{self.repo}:files")
        expect(m["config"]["mediaType"] == CFG_TYPE, f"config mediaType {m['config']['mediaType']}")

    def pull_back(self):
        dg, _ = self.s["art"]
        m = self.c.get_manifest(f"{self.repo}@{dg}")
        expect(m.get("artifactType") == ART_TYPE, f"artifactType {m.get('artifactType')!r}")
        out = os.path.join(self.work, "pulled")
        files = self.c.pull(target=f"{self.repo}:art", outdir=out)
        got = sorted(os.path.basename(f) for f in files)
        expect(got == ["notes.txt", "payload.bin"], f"pulled files {got}")
        for f in files:
            with open(f, "rb") as a, open(os.path.basename(f), "rb") as b:
                expect(a.read() == b.read(), f"{os.path.basename(f)} not byte-identical")

    def tags(self):
        t = sorted(self.c.get_tags(self.repo))
        expect(t == ["art", "extra", "files"], f"tags {t}")

    def push_referrer(self):
        """Artifact whose subject is the 'art' manifest, pushed by digest (no tag)."""
        subj_dg, subj_size = self.s["art"]
        container = self.c.get_container(f"{self.repo}:sig")   # blobs only; manifest goes by digest
        cfg = self.desc("empty.json", EMPTY_TYPE, title=False)
        layer = self.desc("sig.bin", SIG_TYPE)
        self.upload(container, "empty.json", cfg)
        self.upload(container, "sig.bin", layer)
        subject = self.oci.Subject(mediaType=MANIFEST_TYPE, digest=subj_dg, size=subj_size)
        manifest = {"schemaVersion": 2, "mediaType": MANIFEST_TYPE, "artifactType": SIG_TYPE,
                    "config": cfg, "layers": [layer],
                    "subject": {"mediaType": subject.mediaType, "digest": subject.digest,
                                "size": subject.size},
                    "annotations": {"org.opencontainers.image.created": "1970-01-01T00:00:00Z"}}
        dg = digest_of(json.dumps(manifest).encode())
        _, size, r = self.put_manifest(manifest, f"@{dg}")
        self.s["ref"] = (dg, size)
        oci_subject = r.headers.get("OCI-Subject")
        expect(oci_subject in (None, subj_dg), f"OCI-Subject {oci_subject} != {subj_dg}")
        served = self.raw_manifest(dg)
        expect(digest_of(served.content) == dg, "served referrer bytes differ")

    def referrers(self):
        subj_dg, _ = self.s["art"]
        ref_dg, ref_size = self.s["ref"]
        r = self.c.session.get(self.url(f"referrers/{subj_dg}"), timeout=HTTP_TIMEOUT,
                               headers={"Accept": INDEX_TYPE})
        expect(r.status_code == 200, f"GET /v2/{self.name}/referrers/<digest> -> {r.status_code}")
        ct = r.headers.get("Content-Type", "").split(";")[0].strip()
        expect(ct == INDEX_TYPE, f"Content-Type {ct!r}")
        idx = r.json()
        expect(idx.get("mediaType") == INDEX_TYPE, f"mediaType {idx.get('mediaType')!r}")
        mine = [d for d in idx.get("manifests", []) if d.get("digest") == ref_dg]
        expect(len(mine) == 1, f"referrer {ref_dg} listed {len(mine)} times in {idx.get('manifests')}")
        d = mine[0]
        expect(d.get("artifactType") == SIG_TYPE, f"artifactType {d.get('artifactType')!r}")
        expect(d.get("size") == ref_size, f"size {d.get('size')} != {ref_size}")
        expect(d.get("mediaType") == MANIFEST_TYPE, f"descriptor mediaType {d.get('mediaType')!r}")
        # filtering: if the registry says it applied the filter, a foreign type must give nothing
        r2 = self.c.session.get(self.url(f"referrers/{subj_dg}"), timeout=HTTP_TIMEOUT,
                                params={"artifactType": "application/vnd.berth.e2e.none"},
                                headers={"Accept": INDEX_TYPE})
        expect(r2.status_code == 200, f"filtered referrers -> {r2.status_code}")
        if "artifactType" in r2.headers.get("OCI-Filters-Applied", ""):
            expect(r2.json().get("manifests") == [], "filter on a foreign artifactType returned entries")

    def delete(self):
        expect(self.c.delete_tags(self.repo, "extra") == ["extra"], "delete_tags did not report 'extra'")
        t = sorted(self.c.get_tags(self.repo))
        expect("extra" not in t, f"'extra' still listed: {t}")
        r = self.c.session.head(self.url("manifests/extra"), timeout=HTTP_TIMEOUT,
                                headers={"Accept": MANIFEST_TYPE})
        expect(r.status_code == 404, f"HEAD deleted tag -> {r.status_code}")

    def run(self):
        c = "oras-py"
        check(c, "push OCI 1.1 artifact (artifactType, empty config, 2 files)", self.push_artifact)
        check(c, "push files with a custom config mediaType (2 tags)", self.push_files)
        check(c, "pull artifact back (files byte-identical, artifactType kept)", self.pull_back)
        check(c, "list tags (exactly art, extra, files)", self.tags)
        check(c, "push artifact with subject, by digest", self.push_referrer)
        check(c, "referrers API lists the artifact (GET /v2/<name>/referrers/<digest>)", self.referrers)
        check(c, "delete tag (HEAD + DELETE by digest; tag gone)", self.delete)


# --------------------------------------------------------------------------- python-dxf
class DxfChecks:
    def __init__(self, reg, ns, work):
        import dxf

        self.dxf = dxf
        self.reg = reg
        self.ns = ns
        self.name = f"{ns}/dxf"
        self.d = dxf.DXF(reg, self.name, insecure=True, timeout=HTTP_TIMEOUT)
        self.data = write(os.path.join(work, "dxf.bin"), os.urandom(1_500_000))
        self.empty = write(os.path.join(work, "dxf-empty.bin"), b"")
        self.s = {}

    def pull(self, dg):
        return b"".join(self.d.pull_blob(dg))   # pull_blob also verifies the digest itself

    def push_pull(self):
        dg = self.d.push_blob(self.data)
        expect(dg == file_digest(self.data), f"push_blob returned {dg}")
        self.s["blob"] = dg
        expect(self.d.blob_size(dg) == 1_500_000, f"blob_size {self.d.blob_size(dg)}")
        with open(self.data, "rb") as f:
            expect(self.pull(dg) == f.read(), "pulled blob not byte-identical")

    def zero(self):
        dg = self.d.push_blob(self.empty)
        expect(dg == digest_of(b""), f"push_blob returned {dg}")
        expect(self.d.blob_size(dg) == 0, f"blob_size {self.d.blob_size(dg)}")
        expect(self.pull(dg) == b"", "pulled zero-length blob is not empty")

    def alias(self):
        dg = self.s["blob"]
        self.d.set_alias("t1", dg)
        got = self.d.get_alias("t1")
        expect(got == [dg], f"get_alias {got}")
        aliases = sorted(self.d.list_aliases())
        expect(aliases == ["t1"], f"list_aliases {aliases}")

    def list_repos(self):
        base = self.dxf.DXFBase(self.reg, insecure=True, timeout=HTTP_TIMEOUT)
        repos = base.list_repos(batch_size=100)
        mine = sorted(r for r in repos if r.startswith(self.ns + "/"))
        expect(self.name in mine, f"{self.name} not in catalog ({len(repos)} repos, ours: {mine})")
        expect(len(repos) == len(set(repos)), "catalog lists a repository twice")

    def delete(self):
        dg = self.s["blob"]
        removed = self.d.del_alias("t1")
        expect(removed == [dg], f"del_alias returned {removed}")
        self.d.del_blob(dg)
        try:
            self.d.blob_size(dg)
        except requests.HTTPError as e:
            code = e.response.status_code if e.response is not None else None
            expect(code == 404, f"HEAD deleted blob -> {code}")
        else:
            raise CheckFailed("blob still there after del_blob")

    def run(self):
        c = "python-dxf"
        check(c, "push_blob + blob_size + pull_blob (1.5 MB, byte-identical)", self.push_pull)
        check(c, "zero-length blob push_blob/pull_blob", self.zero)
        check(c, "set_alias/get_alias/list_aliases", self.alias)
        check(c, "list_repos (catalog) contains the repository", self.list_repos)
        check(c, "del_alias + del_blob (blob gone)", self.delete)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--registry", required=True)
    ap.add_argument("--namespace", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--groups", default="oras,dxf")
    a = ap.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    groups = set(a.groups.split(","))
    suites = [("oras", "oras-py", OrasChecks), ("dxf", "python-dxf", DxfChecks)]
    for key, client, suite in suites:
        if key not in groups:
            continue
        work = os.path.join(a.workdir, key)
        os.makedirs(work, exist_ok=True)
        holder = {}

        def setup():
            holder["s"] = suite(a.registry, a.namespace, work)
        check(client, "client importable and set up", setup)
        if "s" in holder:
            holder["s"].run()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
