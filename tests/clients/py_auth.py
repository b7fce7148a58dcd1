#!/usr/bin/env python3
"""oras-py and python-dxf against a registry with access control: log in, push, pull back
byte-identical; with a read-only token the push is refused. Prints "ok - ..." or
"not ok - ..." lines, like py_clients.py.

oras-py runs with its default "token" backend as its documentation shows it, and with its
"basic" backend. The token backend first gets a pull token (for the blob HEAD) and re-sends it
when the upload needs push: it asks for a new token only after a 403, which the registry
answers to a token re-sent after its 401 `insufficient_scope`. python-dxf asks for a new token
on that first 401; it sends credentials over HTTPS only, so its check runs when the registry
serves HTTPS (--ca names the certificate to trust).

Usage: py_auth.py --registry HOST:PORT --repo NAME --user U --password P --workdir DIR
                  [--read-only-token T] [--ca CERT.pem]
"""
import argparse
import os
import sys


def main():
    p = argparse.ArgumentParser()
    for flag in ("--registry", "--repo", "--user", "--password", "--workdir"):
        p.add_argument(flag, required=True)
    p.add_argument("--read-only-token")
    p.add_argument("--ca", help="the registry serves HTTPS with this certificate")
    a = p.parse_args()
    if a.ca:
        os.environ["REQUESTS_CA_BUNDLE"] = os.path.abspath(a.ca)   # oras-py's requests session
    import oras.client

    os.makedirs(a.workdir, exist_ok=True)
    os.chdir(a.workdir)                     # oras-py refuses files outside the current directory
    payload = os.urandom(200_000)
    with open("payload.bin", "wb") as f:
        f.write(payload)
    target = f"{a.registry}/{a.repo}:v1"
    config = os.path.join(a.workdir, "docker-config.json")
    scheme = "https" if a.ca else "http"

    def check(tool, what, fn):
        try:
            fn()
            print(f"ok - {tool}: {what} ({scheme})", flush=True)
        except Exception as e:  # noqa: BLE001 - any failure is the check's failure
            print(f"not ok - {tool}: {what} ({scheme}): {str(e)[:300]}", flush=True)

    def client(backend):
        return oras.client.OrasClient(hostname=a.registry, insecure=not a.ca, auth_backend=backend)

    def push_pull(push_backend):
        c = client(push_backend)
        c.login(username=a.user, password=a.password, tls_verify=bool(a.ca), config_path=config)
        r = c.push(target=target, files=["payload.bin"], quiet=True)
        assert r.status_code == 201, f"push -> {r.status_code}"
        for backend in ("basic", "token"):
            c = client(backend)
            c.login(username=a.user, password=a.password, tls_verify=bool(a.ca), config_path=config)
            files = c.pull(target=target, outdir=os.path.join(a.workdir, f"pulled-{backend}"))
            assert len(files) == 1, f"pulled {files} with {backend}"
            with open(files[0], "rb") as f:
                assert f.read() == payload, f"pulled bytes differ ({backend})"

    def read_only_refused():
        c = client("basic")
        c.login(username=a.user, password=a.read_only_token, tls_verify=bool(a.ca),
                config_path=config)
        try:
            r = c.push(target=f"{a.registry}/{a.repo}:ro", files=["payload.bin"], quiet=True)
        except Exception as e:  # oras-py raises on a refused blob upload
            why = str(e).lower()
            assert "forbidden" in why or "denied" in why, f"unexpected error {e}"
            return
        raise AssertionError(f"push with a read-only token answered {r.status_code}")

    def dxf_push_pull():
        import dxf

        def auth(d, response):
            d.authenticate(a.user, a.password, response=response)

        d = dxf.DXF(a.registry, f"{a.repo}-dxf", auth=auth, tlsverify=os.path.abspath(a.ca))
        digest = d.push_blob("payload.bin")
        d.set_alias("v1", digest)
        assert d.get_alias("v1") == [digest], "python-dxf: the alias names another blob"
        assert b"".join(d.pull_blob(digest)) == payload, "python-dxf pulled other bytes"

    check("oras-py", "default token flow: login with password, push, pull back byte-identical",
          lambda: push_pull("token"))
    check("oras-py", "basic backend: login with password, push, pull back byte-identical",
          lambda: push_pull("basic"))
    if a.read_only_token:
        check("oras-py", "push with a read-only token is refused", read_only_refused)
    if a.ca:
        check("python-dxf", "token flow: push, alias, pull back byte-identical", dxf_push_pull)


if __name__ == "__main__":
    sys.exit(main())
