//! Push workflow (spec "Workflow Categories" > "Push"): the three blob upload styles
//! (end-4a/end-6, end-4b, end-5/end-13), cross-repository mounts (end-11) and manifest
//! uploads (end-7), including the rejections a client relies on.

use reqwest::Method;
use reqwest::blocking::Body;
use reqwest::header::CONTENT_TYPE;
use serde_json::{Map, Value, json};

use crate::Ctx;
use crate::check::{self, Outcome, Report, ensure};
use crate::client::{Client, with_query};
use crate::fixtures::{self, Desc, Extra, Image, OCI_EMPTY, OCI_MANIFEST};
use crate::resp::Resp;

const WF: &str = "push";

/// Chunk size used when the registry states no minimum (spec "Pushing a blob in chunks").
const DEFAULT_CHUNK: usize = 512;
/// The largest `OCI-Chunk-Min-Length` this runner honours, to keep its memory bounded.
const MAX_CHUNK: usize = 32 << 20;

/// An open upload session.
struct Session {
    location: String,
    /// From `OCI-Chunk-Min-Length`, else [`DEFAULT_CHUNK`].
    chunk: usize,
}

/// end-4a: `POST /v2/<name>/blobs/uploads/` with `Content-Length: 0` → 202 + Location.
fn open(c: &Client, repo: &str) -> Result<Session, String> {
    let resp = c.send(c.empty(Method::POST, &c.url(&format!("/v2/{repo}/blobs/uploads/"))))?;
    check::status(&resp, &[202])?;
    let location = c.resolve(check::header(&resp, "Location")?)?;
    let min = resp
        .header("OCI-Chunk-Min-Length")
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    Ok(Session {
        location,
        chunk: min.clamp(DEFAULT_CHUNK, MAX_CHUNK),
    })
}

/// end-5: one PATCH. `start` gives `Content-Range: start-end` (inclusive, no unit, as the
/// spec's `^[0-9]+-[0-9]+$`); `None` sends no Content-Range.
fn patch(c: &Client, location: &str, chunk: &[u8], start: Option<usize>) -> Result<Resp, String> {
    let mut req = c.with_bytes(Method::PATCH, location, chunk.to_vec());
    if let Some(start) = start {
        let end = start + chunk.len() - 1;
        req = req.header("Content-Range", format!("{start}-{end}"));
    }
    c.send(req)
}

/// A successful PATCH or status GET: the expected status, `Range: 0-<end>` and a Location.
/// Returns the resolved Location for the next request.
fn progress(c: &Client, resp: &Resp, want_status: u16, end: usize) -> Result<String, String> {
    check::status(resp, &[want_status])?;
    check::header_eq(resp, "Range", &format!("0-{end}"))?;
    c.resolve(check::header(resp, "Location")?)
}

/// end-6: closing PUT `<location>?digest=` with an optional final chunk; expects 201 and a
/// Location, and returns the resolved blob location.
fn close(c: &Client, location: &str, digest: &str, body: Vec<u8>) -> Result<String, String> {
    let url = with_query(location, "digest", digest);
    let resp = c.send(c.with_bytes(Method::PUT, &url, body))?;
    check::status(&resp, &[201])?;
    c.resolve(check::header(&resp, "Location")?)
}

/// The blob is stored: HEAD gives 200 with its size and GET gives its bytes.
fn stored(c: &Client, repo: &str, bytes: &[u8], digest: &str) -> Outcome {
    let head = c.head_blob(repo, digest)?;
    check::status(&head, &[200])?;
    check::content_length(&head, bytes.len())?;
    let get = c.get_blob(repo, digest)?;
    check::status(&get, &[200])?;
    check::body_eq(&get, bytes)
}

/// A `<blob-location>` "being a pullable blob URL" serves the blob.
fn pullable(c: &Client, location: &str, bytes: &[u8]) -> Outcome {
    let resp = c.send(c.get(location))?;
    check::status(&resp, &[200])?;
    check::body_eq(&resp, bytes)
}

/// The outcome of an invalid name: the registry must refuse. The spec gives no status for
/// names that break the `<name>` grammar; its endpoint table lists 404 as the failure of
/// end-4a and end-7 and its code table has NAME_INVALID, so 400 or 404 are accepted, with
/// NAME_INVALID / NAME_UNKNOWN when the body is a JSON error.
fn name_refused(resp: &Resp) -> Outcome {
    check::status(resp, &[400, 404])?;
    check::accept_codes(resp, &["NAME_INVALID", "NAME_UNKNOWN"])
}

pub fn run(ctx: &Ctx, r: &mut Report) {
    let c = ctx.client;
    let repo = ctx.repo("push");

    // end-4a + end-6.
    r.check(WF, "monolithic upload: POST then PUT returns 201", || {
        let blob = fixtures::random_bytes(1000);
        let digest = fixtures::sha256(&blob);
        let s = open(c, &repo)?;
        let loc = close(c, &s.location, &digest, blob.clone())?;
        pullable(c, &loc, &blob)?;
        stored(c, &repo, &blob, &digest)
    });

    // end-4b: 201, or 202 + Location for registries without single-request uploads, after
    // which "clients SHOULD proceed with a subsequent PUT request".
    r.check_noted(
        WF,
        "single POST ?digest= upload returns 201 (or 202 then PUT)",
        || {
            let blob = fixtures::random_bytes(700);
            let digest = fixtures::sha256(&blob);
            let url = with_query(
                &c.url(&format!("/v2/{repo}/blobs/uploads/")),
                "digest",
                &digest,
            );
            let resp = c.send(c.with_bytes(Method::POST, &url, blob.clone()))?;
            check::status(&resp, &[201, 202])?;
            let loc = c.resolve(check::header(&resp, "Location")?)?;
            let (blob_loc, note) = if resp.status == 201 {
                (loc, None)
            } else {
                let loc = close(c, &loc, &digest, blob.clone())?;
                (
                    loc,
                    Some("202: no single-request upload, completed by PUT".into()),
                )
            };
            pullable(c, &blob_loc, &blob)?;
            stored(c, &repo, &blob, &digest)?;
            Ok(note)
        },
    );

    // end-5: chunks with Content-Range, each PATCH to the previous response's Location.
    r.check(
        WF,
        "chunked upload with Content-Range, following Location",
        || {
            let s = open(c, &repo)?;
            let n = s.chunk;
            let blob = fixtures::random_bytes(2 * n + 100);
            let digest = fixtures::sha256(&blob);
            let mut loc = s.location;
            let mut start = 0;
            for chunk in blob.chunks(n) {
                let resp = patch(c, &loc, chunk, Some(start))?;
                start += chunk.len();
                loc = progress(c, &resp, 202, start - 1)?;
            }
            close(c, &loc, &digest, Vec::new())?;
            stored(c, &repo, &blob, &digest)
        },
    );

    // "If a chunk is uploaded out of order, the registry MUST respond with a 416".
    r.check(WF, "out-of-order chunk returns 416", || {
        let s = open(c, &repo)?;
        let n = s.chunk;
        let blob = fixtures::random_bytes(3 * n);
        let first = patch(c, &s.location, &blob[..n], Some(0))?;
        let loc = progress(c, &first, 202, n - 1)?;
        // Skips the second chunk: bytes n..2n were never sent.
        let resp = patch(c, &loc, &blob[2 * n..], Some(2 * n))?;
        check::status(&resp, &[416])
    });

    // A closing PUT's chunk is a chunk like a PATCH's: one that does not start where the
    // upload ends is refused with 416, and the upload goes on from its Range.
    r.check(
        WF,
        "closing PUT with an out-of-order Content-Range returns 416; the upload survives",
        || {
            let s = open(c, &repo)?;
            let n = s.chunk;
            let blob = fixtures::random_bytes(3 * n);
            let digest = fixtures::sha256(&blob);
            let first = patch(c, &s.location, &blob[..n], Some(0))?;
            let loc = progress(c, &first, 202, n - 1)?;
            let url = with_query(&loc, "digest", &digest);
            let resp = c.send(
                c.with_bytes(Method::PUT, &url, blob[2 * n..].to_vec())
                    .header("Content-Range", format!("{}-{}", 2 * n, 3 * n - 1)),
            )?;
            check::status(&resp, &[416])?;
            let status = c.send(c.get(&loc))?;
            let loc = progress(c, &status, 204, n - 1)?;
            let second = patch(c, &loc, &blob[n..], Some(n))?;
            let loc = progress(c, &second, 202, 3 * n - 1)?;
            close(c, &loc, &digest, Vec::new())?;
            stored(c, &repo, &blob, &digest)
        },
    );

    // end-13: "The response to an active upload <location> MUST be a 204 ... Location ... Range",
    // and the upload goes on from there (the "Resumable Push" use case).
    r.check(
        WF,
        "GET upload status returns 204 with Range and Location; upload resumes from it",
        || {
            let s = open(c, &repo)?;
            let n = s.chunk;
            let blob = fixtures::random_bytes(2 * n);
            let digest = fixtures::sha256(&blob);
            let first = patch(c, &s.location, &blob[..n], Some(0))?;
            let loc = progress(c, &first, 202, n - 1)?;
            let status = c.send(c.get(&loc))?;
            let loc = progress(c, &status, 204, n - 1)?;
            let second = patch(c, &loc, &blob[n..], Some(n))?;
            let loc = progress(c, &second, 202, 2 * n - 1)?;
            close(c, &loc, &digest, Vec::new())?;
            stored(c, &repo, &blob, &digest)
        },
    );

    // end-5 as docker and podman send it: one PATCH, no Content-Range (here also no
    // Content-Length: the body is streamed with chunked transfer encoding).
    r.check(WF, "streamed PATCH without Content-Range, then PUT", || {
        let blob = fixtures::random_bytes(3000);
        let digest = fixtures::sha256(&blob);
        let s = open(c, &repo)?;
        let body = Body::new(std::io::Cursor::new(blob.clone()));
        let resp = c.send(
            c.request(Method::PATCH, &s.location)
                .header(CONTENT_TYPE, "application/octet-stream")
                .body(body),
        )?;
        let loc = progress(c, &resp, 202, blob.len() - 1)?;
        close(c, &loc, &digest, Vec::new())?;
        stored(c, &repo, &blob, &digest)
    });

    // "The final chunk MAY be uploaded using a PATCH request or it MAY be uploaded in the
    // closing PUT request."
    r.check(WF, "closing PUT carries the final chunk", || {
        let s = open(c, &repo)?;
        let n = s.chunk;
        let blob = fixtures::random_bytes(n + 300);
        let digest = fixtures::sha256(&blob);
        let first = patch(c, &s.location, &blob[..n], Some(0))?;
        let loc = progress(c, &first, 202, n - 1)?;
        let url = with_query(&loc, "digest", &digest);
        let last = &blob[n..];
        let resp = c.send(
            c.with_bytes(Method::PUT, &url, last.to_vec())
                .header("Content-Range", format!("{n}-{}", blob.len() - 1)),
        )?;
        check::status(&resp, &[201])?;
        check::header(&resp, "Location")?;
        stored(c, &repo, &blob, &digest)
    });

    // end-6 failure (400) with code-4 DIGEST_INVALID; nothing may become visible.
    r.check(
        WF,
        "PUT with a wrong digest returns 400 DIGEST_INVALID and stores nothing",
        || {
            let blob = fixtures::random_bytes(500);
            let real = fixtures::sha256(&blob);
            let claimed = fixtures::unknown_digest();
            let s = open(c, &repo)?;
            let url = with_query(&s.location, "digest", &claimed);
            let resp = c.send(c.with_bytes(Method::PUT, &url, blob))?;
            check::error(&resp, 400, "DIGEST_INVALID")?;
            for d in [&claimed, &real] {
                let head = c.head_blob(&repo, d)?;
                ensure(head.status == 404, || {
                    format!(
                        "after the rejected upload HEAD {d} returned {}, expected 404",
                        head.status
                    )
                })?;
            }
            Ok(())
        },
    );

    r.check(WF, "zero-length blob upload", || {
        let digest = fixtures::sha256(b"");
        let s = open(c, &repo)?;
        close(c, &s.location, &digest, Vec::new())?;
        stored(c, &repo, b"", &digest)
    });

    // Image spec descriptor.md: "Implementations MAY implement SHA-512 digest verification".
    r.check(WF, "sha512 blob digest upload", || {
        let blob = fixtures::random_bytes(800);
        let digest = fixtures::sha512(&blob);
        let s = open(c, &repo)?;
        close(c, &s.location, &digest, blob.clone())?;
        stored(c, &repo, &blob, &digest)
    });

    mounts(ctx, r, &repo);

    // end-13 failure (404) for a session that no longer exists: this one was completed. (The
    // runner does not make up upload URLs: the location "SHOULD NOT be assembled manually".)
    r.check(
        WF,
        "GET status of a completed upload returns 404 BLOB_UPLOAD_UNKNOWN",
        || {
            let blob = fixtures::random_bytes(100);
            let s = open(c, &repo)?;
            close(c, &s.location, &fixtures::sha256(&blob), blob)?;
            check::error(&c.send(c.get(&s.location))?, 404, "BLOB_UPLOAD_UNKNOWN")
        },
    );

    // Cancelling an upload is not in the v1.1.1 endpoint table; it comes from the Docker
    // Registry HTTP API V2 (apdx-1) and clients use it to abandon uploads.
    r.check(
        WF,
        "DELETE upload session returns 204, then its status is 404 BLOB_UPLOAD_UNKNOWN",
        || {
            let s = open(c, &repo)?;
            let resp = c.send(c.delete(&s.location))?;
            check::status(&resp, &[204])?;
            check::error(&c.send(c.get(&s.location))?, 404, "BLOB_UPLOAD_UNKNOWN")
        },
    );

    manifests(ctx, r, &repo);
}

/// end-11 and its fallbacks.
fn mounts(ctx: &Ctx, r: &mut Report, repo: &str) {
    let c = ctx.client;
    let blob = fixtures::random_bytes(600);
    let digest = match c.push_blob(repo, &blob) {
        Ok(d) => d,
        Err(e) => return r.setup_failed(WF, &format!("mount source blob: {e}")),
    };
    let mount_url = |target: &str, mount: &str, from: Option<&str>| {
        let url = with_query(
            &c.url(&format!("/v2/{target}/blobs/uploads/")),
            "mount",
            mount,
        );
        match from {
            Some(f) => with_query(&url, "from", f),
            None => url,
        }
    };

    // "The response to a successful mount MUST be 201 Created, and MUST contain ... Location"
    // plus Docker-Content-Digest, which dockerd and containerd expect (e2e README).
    r.check(
        WF,
        "cross-repository mount with from returns 201, Location and Docker-Content-Digest",
        || {
            let target = ctx.repo("push-mount");
            let resp = c.send(c.empty(Method::POST, &mount_url(&target, &digest, Some(repo))))?;
            check::status(&resp, &[201])?;
            let loc = c.resolve(check::header(&resp, "Location")?)?;
            check::header_eq(&resp, "Docker-Content-Digest", &digest)?;
            pullable(c, &loc, &blob)?;
            stored(c, &target, &blob, &digest)
        },
    );

    // "The registry MAY treat the from parameter as optional"; otherwise it starts a session.
    r.check_noted(
        WF,
        "mount without from of an existing blob returns 201 or 202 (never 404)",
        || {
            let target = ctx.repo("push-mount-nofrom");
            let resp = c.send(c.empty(Method::POST, &mount_url(&target, &digest, None)))?;
            check::status(&resp, &[201, 202])?;
            let loc = c.resolve(check::header(&resp, "Location")?)?;
            let mut note = None;
            if resp.status == 202 {
                close(c, &loc, &digest, blob.clone())?;
                note = Some("202: not mounted without from, uploaded instead".into());
            }
            stored(c, &target, &blob, &digest)?;
            Ok(note)
        },
    );

    // "if a registry ... is unable to mount the requested blob, it SHOULD return a 202"
    // and the session is a normal upload.
    r.check(
        WF,
        "mount of an unknown blob returns 202 and a working upload session",
        || {
            let target = ctx.repo("push-mount-unknown");
            let fresh = fixtures::random_bytes(400);
            let fresh_digest = fixtures::sha256(&fresh);
            let resp =
                c.send(c.empty(Method::POST, &mount_url(&target, &fresh_digest, Some(repo))))?;
            check::status(&resp, &[202])?;
            let loc = c.resolve(check::header(&resp, "Location")?)?;
            close(c, &loc, &fresh_digest, fresh.clone())?;
            stored(c, &target, &fresh, &fresh_digest)
        },
    );
}

/// An OCI 1.1 artifact manifest: empty config, one empty layer, an artifactType.
fn artifact(subject: Option<&Desc>, annotations: Option<Map<String, Value>>) -> Vec<u8> {
    let empty = Desc::of(OCI_EMPTY, fixtures::EMPTY_JSON);
    fixtures::manifest_bytes(
        &empty,
        std::slice::from_ref(&empty),
        Extra {
            artifact_type: Some("application/vnd.berth.conformance.test.v1"),
            subject,
            annotations,
        },
    )
}

/// A valid image manifest of about `total` bytes, padded with one annotation.
fn padded_manifest(config: &Desc, layer: &Desc, total: usize) -> Vec<u8> {
    let bare = fixtures::manifest_bytes(config, std::slice::from_ref(layer), Extra::default());
    let pad = total.saturating_sub(bare.len() + 64);
    let mut a = Map::new();
    a.insert(
        "org.berth.conformance.padding".into(),
        json!("p".repeat(pad)),
    );
    fixtures::manifest_bytes(
        config,
        std::slice::from_ref(layer),
        Extra {
            annotations: Some(a),
            ..Extra::default()
        },
    )
}

/// end-7 and the rejections that protect the content graph.
fn manifests(ctx: &Ctx, r: &mut Report, repo: &str) {
    let c = ctx.client;

    // "Upon a successful upload, the registry MUST return 201 Created, and MUST have ...
    // Location"; "The Docker-Content-Digest header ... MUST be equal to the client provided
    // digest".
    let manifest_pushed = |resp: &Resp, image: &Image| -> Outcome {
        check::status(resp, &[201])?;
        check::header_eq(resp, "Docker-Content-Digest", &image.digest)?;
        let loc = c.resolve(check::header(resp, "Location")?)?;
        let got = c.send(c.get(&loc).header("Accept", fixtures::MANIFEST_ACCEPT))?;
        check::status(&got, &[200])?;
        check::body_eq(&got, &image.manifest)
    };
    r.check(
        WF,
        "PUT manifest by tag returns 201, Location and Docker-Content-Digest",
        || {
            let image = Image::new("push-tag", 300);
            c.push_blob(repo, &image.config)?;
            c.push_blob(repo, &image.layer)?;
            let resp = c.put_manifest(repo, "by-tag", OCI_MANIFEST, image.manifest.clone())?;
            manifest_pushed(&resp, &image)
        },
    );
    r.check(
        WF,
        "PUT manifest by digest returns 201, Location and Docker-Content-Digest",
        || {
            let image = Image::new("push-digest", 300);
            c.push_blob(repo, &image.config)?;
            c.push_blob(repo, &image.layer)?;
            let resp = c.put_manifest(repo, &image.digest, OCI_MANIFEST, image.manifest.clone())?;
            manifest_pushed(&resp, &image)
        },
    );

    // "A registry MAY reject a manifest ... with descriptors ... that reference a manifest or
    // blob that does not exist ... it MUST result in one or more MANIFEST_BLOB_UNKNOWN". The
    // runner expects the rejection (Berth rejects; so does distribution).
    r.check(
        WF,
        "manifest referencing a missing blob returns 400 MANIFEST_BLOB_UNKNOWN",
        || {
            let image = Image::new("push-missing-layer", 300);
            c.push_blob(repo, &image.config)?; // the layer is never pushed
            let resp = c.put_manifest(repo, "missing-layer", OCI_MANIFEST, image.manifest)?;
            check::error(&resp, 400, "MANIFEST_BLOB_UNKNOWN")
        },
    );

    // code-6 MANIFEST_INVALID: "manifest invalid".
    r.check(
        WF,
        "malformed manifest JSON returns 400 MANIFEST_INVALID",
        || {
            let body = br#"{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": {"#;
            let resp = c.put_manifest(repo, "malformed", OCI_MANIFEST, body.to_vec())?;
            check::error(&resp, 400, "MANIFEST_INVALID")
        },
    );

    // "Pushing Manifests with Subject".
    let empty_pushed = c.push_blob(repo, fixtures::EMPTY_JSON);
    r.check(
        WF,
        "manifest whose subject does not exist yet is accepted (201)",
        || {
            empty_pushed.clone()?;
            let ghost = Desc {
                media_type: OCI_MANIFEST.into(),
                digest: fixtures::unknown_digest(),
                size: 512,
            };
            let bytes = artifact(Some(&ghost), None);
            let resp = c.put_manifest(repo, &fixtures::sha256(&bytes), OCI_MANIFEST, bytes)?;
            check::status(&resp, &[201])
        },
    );
    // "a registry implementation that supports the referrers API MUST respond with the
    // response header OCI-Subject: <subject digest>".
    r.check(
        WF,
        "manifest with subject returns 201 with OCI-Subject",
        || {
            empty_pushed.clone()?;
            let subject = Image::new("push-subject", 100);
            c.push_image(repo, &subject, "subject")?;
            let bytes = artifact(Some(&subject.desc()), None);
            let resp = c.put_manifest(repo, &fixtures::sha256(&bytes), OCI_MANIFEST, bytes)?;
            check::status(&resp, &[201])?;
            check::header_eq(&resp, "OCI-Subject", &subject.digest)
        },
    );

    // "Client and registry implementations SHOULD expect to be able to support manifest pushes
    // of at least 4 megabytes" and, over the registry's limit, "SHOULD respond ... 413".
    let sized = Image::new("push-sized", 100);
    let sized_blobs = c
        .push_blob(repo, &sized.config)
        .and_then(|_| c.push_blob(repo, &sized.layer));
    let config = Desc::of(fixtures::OCI_CONFIG, &sized.config);
    let layer = Desc::of(fixtures::OCI_LAYER, &sized.layer);
    r.check(
        WF,
        "manifest of 3.9 MB is accepted (spec: at least 4 MB)",
        || {
            sized_blobs.clone()?;
            let bytes = padded_manifest(&config, &layer, 3_900_000);
            let resp = c.put_manifest(repo, "large", OCI_MANIFEST, bytes)?;
            check::status(&resp, &[201])
        },
    );
    r.check(WF, "manifest over 4 MiB returns 413", || {
        sized_blobs.clone()?;
        let bytes = padded_manifest(&config, &layer, (4 << 20) + 4096);
        let resp = c.put_manifest(repo, "too-large", OCI_MANIFEST, bytes)?;
        if resp.status == 201 {
            return Err(
                "expected 413, got 201: no limit at 4 MiB (spec: a registry SHOULD \
                 enforce some limit and SHOULD answer 413 above it)"
                    .into(),
            );
        }
        check::status(&resp, &[413])
    });

    // "<name> MUST match" the name grammar.
    for (label, bad) in [
        ("uppercase", ctx.repo("Upper-Case")),
        ("'..'", ctx.repo("dots..inside")),
    ] {
        r.check_noted(
            WF,
            &format!("invalid repository name ({label}) is refused with 400 NAME_INVALID or 404"),
            || {
                let url = c.url(&format!("/v2/{bad}/blobs/uploads/"));
                let post = c.send(c.empty(Method::POST, &url))?;
                name_refused(&post)?;
                let image = Image::new("push-bad-name", 10);
                let put = c.put_manifest(&bad, "v1", OCI_MANIFEST, image.manifest)?;
                name_refused(&put)?;
                Ok(Some(format!(
                    "upload POST: {}, manifest PUT: {}",
                    post.summary(),
                    put.summary()
                )))
            },
        );
    }
}
