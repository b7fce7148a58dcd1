#!/usr/bin/env python3
"""oras-py against a registry with access control: log in, push files, pull them back
byte-identical; with a read-only token the push is refused. Prints "ok - ..." or
"not ok - ..." lines, like py_clients.py.

Pushes use oras-py's "basic" auth backend (Basic credentials on every request): its "token"
backend keeps the first token it got (pull, for the blob HEAD) when a later request needs
push, and never asks again. Pulls also run through the token backend.

Usage: py_auth.py --registry HOST:PORT --repo NAME --user U --password P --read-only-token T
                  --workdir DIR
"""
import argparse
import os
import sys


def main():
    p = argparse.ArgumentParser()
    for flag in ("--registry", "--repo", "--user", "--password", "--read-only-token", "--workdir"):
        p.add_argument(flag, required=True)
    a = p.parse_args()
    import oras.client

    os.makedirs(a.workdir, exist_ok=True)
    os.chdir(a.workdir)                     # oras-py refuses files outside the current directory
    payload = os.urandom(200_000)
    with open("payload.bin", "wb") as f:
        f.write(payload)
    target = f"{a.registry}/{a.repo}:v1"
    config = os.path.join(a.workdir, "docker-config.json")

    def check(what, fn):
        try:
            fn()
            print(f"ok - oras-py: {what}", flush=True)
        except Exception as e:  # noqa: BLE001 - any failure is the check's failure
            print(f"not ok - oras-py: {what}: {str(e)[:300]}", flush=True)

    def client(backend):
        return oras.client.OrasClient(hostname=a.registry, insecure=True, auth_backend=backend)

    def push_pull():
        c = client("basic")
        c.login(username=a.user, password=a.password, tls_verify=False, config_path=config)
        r = c.push(target=target, files=["payload.bin"], quiet=True)
        assert r.status_code == 201, f"push -> {r.status_code}"
        for backend in ("basic", "token"):
            c = client(backend)
            c.login(username=a.user, password=a.password, tls_verify=False, config_path=config)
            files = c.pull(target=target, outdir=os.path.join(a.workdir, f"pulled-{backend}"))
            assert len(files) == 1, f"pulled {files} with {backend}"
            with open(files[0], "rb") as f:
                assert f.read() == payload, f"pulled bytes differ ({backend})"

    def read_only_refused():
        c = client("basic")
        c.login(username=a.user, password=a.read_only_token, tls_verify=False, config_path=config)
        try:
            r = c.push(target=f"{a.registry}/{a.repo}:ro", files=["payload.bin"], quiet=True)
        except Exception as e:  # oras-py raises on a refused blob upload
            why = str(e).lower()
            assert "forbidden" in why or "denied" in why, f"unexpected error {e}"
            return
        raise AssertionError(f"push with a read-only token answered {r.status_code}")

    check("login with password, push, pull back byte-identical (basic and token flow)", push_pull)
    check("push with a read-only token is refused", read_only_refused)


if __name__ == "__main__":
    sys.exit(main())
