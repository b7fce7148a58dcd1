//! Pull workflow (spec "Workflow Categories" > "Pull"): manifests and blobs by GET and HEAD
//! (end-2, end-3), ranged blob reads, and the 404s for content that is not there.

use crate::Ctx;
use crate::check::{self, Outcome, Report, ensure};
use crate::fixtures::{self, Desc, Image, OCI_INDEX, OCI_MANIFEST};
use crate::resp::Resp;

const WF: &str = "pull";

struct Setup {
    repo: String,
    image: Image,
    index: Vec<u8>,
    index_digest: String,
}

fn setup(ctx: &Ctx) -> Result<Setup, String> {
    let c = ctx.client;
    let repo = ctx.repo("pull");
    let image = Image::new("pull", 1000);
    c.push_image(&repo, &image, "v1")?;
    let index = fixtures::index_bytes(&[image.desc()]);
    c.push_manifest(&repo, "multi", OCI_INDEX, &index)?;
    let index_digest = fixtures::sha256(&index);
    // A second repository that exists but never received the first one's blobs.
    let other = Image::new("pull-other", 32);
    c.push_image(&ctx.repo("pull-other"), &other, "v1")?;
    Ok(Setup {
        repo,
        image,
        index,
        index_digest,
    })
}

/// What a successful manifest GET must show: 200, the exact pushed bytes (so they hash to the
/// digest), the pushed Content-Type, Docker-Content-Digest and Content-Length.
fn manifest_response(resp: &Resp, bytes: &[u8], digest: &str, media_type: &str) -> Outcome {
    check::status(resp, &[200])?;
    if resp.method != reqwest::Method::HEAD {
        check::body_eq(resp, bytes)?;
        let got = fixtures::sha256(&resp.body);
        ensure(got == digest, || {
            format!("body hashes to {got}, expected {digest}")
        })?;
    } else {
        ensure(resp.body.is_empty(), || "HEAD response has a body".into())?;
    }
    check::content_type(resp, media_type)?;
    check::header_eq(resp, "Docker-Content-Digest", digest)?;
    // HEAD "SHOULD contain the size ... in the header Content-Length"; a GET body may also be
    // sent with chunked framing, so there it is checked only when present.
    if resp.method == reqwest::Method::HEAD || resp.header("Content-Length").is_some() {
        check::content_length(resp, bytes.len())?;
    }
    Ok(())
}

/// A blob response's Docker-Content-Digest, if present, "MUST be a digest matching that of
/// the response body" (end-2).
fn blob_digest_header(resp: &Resp, digest: &str) -> Outcome {
    match resp.header("Docker-Content-Digest") {
        None => Ok(()),
        Some(got) => ensure(got == digest, || {
            format!("Docker-Content-Digest is {got}, expected {digest}")
        }),
    }
}

pub fn run(ctx: &Ctx, r: &mut Report) {
    let c = ctx.client;
    let s = match setup(ctx) {
        Ok(s) => s,
        Err(e) => return r.setup_failed(WF, &e),
    };
    let repo = &s.repo;
    let img = &s.image;
    let layer = Desc::of(fixtures::OCI_LAYER, &img.layer);

    // end-3, "Pulling manifests".
    r.check(WF, "GET manifest by tag", || {
        let resp = c.get_manifest(repo, "v1")?;
        manifest_response(&resp, &img.manifest, &img.digest, OCI_MANIFEST)
    });
    r.check(WF, "GET manifest by digest", || {
        let resp = c.get_manifest(repo, &img.digest)?;
        manifest_response(&resp, &img.manifest, &img.digest, OCI_MANIFEST)
    });
    // end-3, "Checking if content exists in the registry".
    r.check(WF, "HEAD manifest by tag", || {
        let resp = c.head_manifest(repo, "v1")?;
        manifest_response(&resp, &img.manifest, &img.digest, OCI_MANIFEST)
    });
    r.check(WF, "HEAD manifest by digest", || {
        let resp = c.head_manifest(repo, &img.digest)?;
        manifest_response(&resp, &img.manifest, &img.digest, OCI_MANIFEST)
    });
    r.check(WF, "GET image index by tag keeps its media type", || {
        let resp = c.get_manifest(repo, "multi")?;
        manifest_response(&resp, &s.index, &s.index_digest, OCI_INDEX)
    });

    // end-2, "Pulling blobs".
    r.check(WF, "GET blob", || {
        let resp = c.get_blob(repo, &layer.digest)?;
        check::status(&resp, &[200])?;
        check::body_eq(&resp, &img.layer)?;
        blob_digest_header(&resp, &layer.digest)
    });
    r.check(WF, "HEAD blob", || {
        let resp = c.head_blob(repo, &layer.digest)?;
        check::status(&resp, &[200])?;
        ensure(resp.body.is_empty(), || "HEAD response has a body".into())?;
        check::content_length(&resp, layer.size)?;
        blob_digest_header(&resp, &layer.digest)
    });

    // "A registry SHOULD support the `Range` request header in accordance with RFC 9110."
    let blob_url = c.url(&format!("/v2/{repo}/blobs/{}", layer.digest));
    r.check(WF, "GET blob with Range: bytes=0-9 returns 206", || {
        let resp = c.send(c.get(&blob_url).header("Range", "bytes=0-9"))?;
        check::status(&resp, &[206])?;
        check::header_eq(&resp, "Content-Range", &format!("bytes 0-9/{}", layer.size))?;
        check::body_eq(&resp, &img.layer[..10])
    });
    r.check(
        WF,
        "GET blob with open-ended Range: bytes=990- returns 206",
        || {
            let resp = c.send(c.get(&blob_url).header("Range", "bytes=990-"))?;
            check::status(&resp, &[206])?;
            check::header_eq(
                &resp,
                "Content-Range",
                &format!("bytes 990-{}/{}", layer.size - 1, layer.size),
            )?;
            check::body_eq(&resp, &img.layer[990..])
        },
    );
    r.check(WF, "GET blob with unsatisfiable Range returns 416", || {
        let range = format!("bytes={}-{}", layer.size + 100, layer.size + 200);
        let resp = c.send(c.get(&blob_url).header("Range", range))?;
        check::status(&resp, &[416])
    });
    // RFC 9110 §14.1.1: a range whose last byte comes before its first is invalid; §14.2
    // lets the server ignore it (200, the whole blob) or call it unsatisfiable (416).
    r.check(
        WF,
        "GET blob with an inverted Range (bytes=500-0) returns 200 or 416",
        || {
            let resp = c.send(c.get(&blob_url).header("Range", "bytes=500-0"))?;
            check::status(&resp, &[200, 416])?;
            if resp.status == 200 {
                check::body_eq(&resp, &img.layer)?;
            }
            Ok(())
        },
    );

    // "If the blob is not found in the repository, the response code MUST be 404".
    let unknown = fixtures::unknown_digest();
    r.check(WF, "GET unknown blob returns 404 BLOB_UNKNOWN", || {
        check::error(&c.get_blob(repo, &unknown)?, 404, "BLOB_UNKNOWN")
    });
    r.check(WF, "HEAD unknown blob returns 404", || {
        check::status(&c.head_blob(repo, &unknown)?, &[404])
    });
    r.check(
        WF,
        "GET blob pushed only to another repository returns 404",
        || {
            let resp = c.get_blob(&ctx.repo("pull-other"), &layer.digest)?;
            check::status(&resp, &[404])?;
            check::accept_codes(&resp, &["BLOB_UNKNOWN"])
        },
    );

    // "If the manifest is not found in the repository, the response code MUST be 404".
    r.check(WF, "GET unknown tag returns 404 MANIFEST_UNKNOWN", || {
        check::error(
            &c.get_manifest(repo, "no-such-tag")?,
            404,
            "MANIFEST_UNKNOWN",
        )
    });
    r.check(
        WF,
        "GET unknown manifest digest returns 404 MANIFEST_UNKNOWN",
        || check::error(&c.get_manifest(repo, &unknown)?, 404, "MANIFEST_UNKNOWN"),
    );
    r.check(WF, "HEAD unknown manifest returns 404", || {
        check::status(&c.head_manifest(repo, "no-such-tag")?, &[404])
    });
    // A reference that cannot be a tag names no manifest: the spec's own conformance suite
    // expects 404 (and so do its peers), not a 400 for the form of the name.
    r.check(
        WF,
        "GET and HEAD of a reference that is not a valid tag return 404",
        || {
            check::error(&c.get_manifest(repo, ".hidden")?, 404, "MANIFEST_UNKNOWN")?;
            check::status(&c.head_manifest(repo, ".hidden")?, &[404])
        },
    );
    // Push section: "An attempt to pull a nonexistent repository MUST return 404".
    let missing = ctx.repo("no-such-repo");
    r.check(WF, "GET manifest in unknown repository returns 404", || {
        let resp = c.get_manifest(&missing, "v1")?;
        check::status(&resp, &[404])?;
        check::accept_codes(&resp, &["NAME_UNKNOWN", "MANIFEST_UNKNOWN"])
    });
    r.check(WF, "GET blob in unknown repository returns 404", || {
        let resp = c.get_blob(&missing, &layer.digest)?;
        check::status(&resp, &[404])?;
        check::accept_codes(&resp, &["NAME_UNKNOWN", "BLOB_UNKNOWN"])
    });
}
