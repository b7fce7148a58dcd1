//! Content management (spec "Workflow Categories" > "Content Management"): deleting tags,
//! manifests (end-9) and blobs (end-10). Registries MAY disable deletion (then 400 or 405),
//! but one claiming this category "MUST implement all APIs in the claimed category", so the
//! runner expects deletion to work.

use crate::Ctx;
use crate::check::{self, Outcome, Report, ensure};
use crate::client::Client;
use crate::fixtures::{self, Image, OCI_MANIFEST};
use crate::resp::Resp;

const WF: &str = "management";

struct Setup {
    repo: String,
    image: Image,
    blob_digest: String,
}

fn setup(ctx: &Ctx) -> Result<Setup, String> {
    let c = ctx.client;
    let repo = ctx.repo("manage");
    let image = Image::new("manage", 100);
    c.push_image(&repo, &image, "t1")?;
    c.push_manifest(&repo, "t2", OCI_MANIFEST, &image.manifest)?;
    // A second image keeps the repository alive after the first one is deleted.
    c.push_image(&repo, &Image::new("manage-other", 100), "other")?;
    // A blob no manifest references.
    let blob = fixtures::random_bytes(256);
    let blob_digest = c.push_blob(&repo, &blob)?;
    Ok(Setup {
        repo,
        image,
        blob_digest,
    })
}

/// GET of a manifest reference must give `want`.
fn manifest_status(c: &Client, repo: &str, reference: &str, want: u16) -> Outcome {
    let resp = c.get_manifest(repo, reference)?;
    ensure(resp.status == want, || {
        format!(
            "GET manifest {reference}: expected {want}, got {}",
            resp.summary()
        )
    })
}

/// A 400 or 405 to a tag DELETE means tag deletion is disabled.
fn tag_delete_disabled(resp: &Resp) -> Option<String> {
    matches!(resp.status, 400 | 405).then(|| {
        format!(
            "tag deletion disabled: {} (spec: MUST be 400 or 405 when disabled)",
            resp.summary()
        )
    })
}

pub fn run(ctx: &Ctx, r: &mut Report) {
    let c = ctx.client;
    let s = match setup(ctx) {
        Ok(s) => s,
        Err(e) => return r.setup_failed(WF, &e),
    };
    let repo = &s.repo;
    let digest = &s.image.digest;
    let manifest_url = |reference: &str| c.url(&format!("/v2/{repo}/manifests/{reference}"));

    // "Deleting tags": 202, then "a GET to /v2/<name>/manifests/<tag> will return a 404".
    // "If tag deletion is disabled, the registry MUST respond with either a 400 Bad Request or
    // a 405 Method Not Allowed": a conformant alternative, passed with a note.
    r.check_noted(
        WF,
        "DELETE tag returns 202 and removes only the tag (or 400/405: disabled)",
        || {
            let resp = c.send(c.delete(&manifest_url("t1")))?;
            if let Some(note) = tag_delete_disabled(&resp) {
                return Ok(Some(note));
            }
            check::status(&resp, &[202])?;
            manifest_status(c, repo, "t1", 404)?;
            manifest_status(c, repo, digest, 200)?;
            manifest_status(c, repo, "t2", 200)?;
            Ok(None)
        },
    );

    // "Deleting Manifests": 202, then "a GET to /v2/<name>/manifests/<digest> and any tag
    // pointing to that digest will return a 404".
    r.check(
        WF,
        "DELETE manifest by digest returns 202; it and its tags are gone",
        || {
            let resp = c.send(c.delete(&manifest_url(digest)))?;
            check::status(&resp, &[202])?;
            manifest_status(c, repo, digest, 404)?;
            manifest_status(c, repo, "t2", 404)?;
            let head = c.head_manifest(repo, digest)?;
            ensure(head.status == 404, || {
                format!("HEAD after delete: expected 404, got {}", head.status)
            })?;
            manifest_status(c, repo, "other", 200)?;
            let tags = c.send(c.get(&c.url(&format!("/v2/{repo}/tags/list"))))?;
            check::status(&tags, &[200])?;
            let body = tags.json()?;
            let listed: Vec<&str> = body
                .get("tags")
                .and_then(|t| t.as_array())
                .map(|a| a.iter().filter_map(|t| t.as_str()).collect())
                .unwrap_or_default();
            ensure(listed == ["other"], || {
                format!("tags after the delete: expected [\"other\"], got {listed:?}")
            })
        },
    );

    r.check(WF, "a deleted manifest can be pushed again", || {
        let resp = c.put_manifest(repo, "again", OCI_MANIFEST, s.image.manifest.clone())?;
        check::status(&resp, &[201])?;
        manifest_status(c, repo, digest, 200)
    });

    // "Deleting Blobs": 202.
    r.check(WF, "DELETE blob returns 202, then the blob is 404", || {
        let url = c.url(&format!("/v2/{repo}/blobs/{}", s.blob_digest));
        let resp = c.send(c.delete(&url))?;
        check::status(&resp, &[202])?;
        let head = c.head_blob(repo, &s.blob_digest)?;
        ensure(head.status == 404, || {
            format!("HEAD after delete: expected 404, got {}", head.status)
        })?;
        check::error(&c.get_blob(repo, &s.blob_digest)?, 404, "BLOB_UNKNOWN")
    });

    // end-9 / end-10 failures.
    let unknown = fixtures::unknown_digest();
    r.check(WF, "DELETE unknown manifest digest returns 404", || {
        let resp = c.send(c.delete(&manifest_url(&unknown)))?;
        check::status(&resp, &[404])?;
        check::accept_codes(&resp, &["MANIFEST_UNKNOWN"])
    });
    r.check_noted(
        WF,
        "DELETE unknown tag returns 404 (or 400/405: disabled)",
        || {
            let resp = c.send(c.delete(&manifest_url("no-such-tag")))?;
            if let Some(note) = tag_delete_disabled(&resp) {
                return Ok(Some(note));
            }
            check::status(&resp, &[404])?;
            check::accept_codes(&resp, &["MANIFEST_UNKNOWN"])?;
            Ok(None)
        },
    );
    // "If the blob is not found, a 404 Not Found code MUST be returned."
    r.check(WF, "DELETE unknown blob returns 404", || {
        let resp = c.send(c.delete(&c.url(&format!("/v2/{repo}/blobs/{unknown}"))))?;
        check::status(&resp, &[404])?;
        check::accept_codes(&resp, &["BLOB_UNKNOWN"])
    });
    // "If the repository does not exist, the response MUST return 404 Not Found."
    r.check(
        WF,
        "DELETE manifest in an unknown repository returns 404",
        || {
            let url = c.url(&format!(
                "/v2/{}/manifests/{digest}",
                ctx.repo("no-such-repo")
            ));
            let resp = c.send(c.delete(&url))?;
            check::status(&resp, &[404])?;
            check::accept_codes(&resp, &["NAME_UNKNOWN", "MANIFEST_UNKNOWN"])
        },
    );
}
