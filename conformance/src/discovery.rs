//! Content discovery (spec "Workflow Categories" > "Content Discovery"): tag listing with
//! pagination (end-8a, end-8b), the referrers API (end-12a, end-12b), and the catalog, which
//! the v1.1.1 spec does not define but every Docker-compatible client uses.

use serde_json::{Map, Value, json};

use crate::Ctx;
use crate::check::{self, Outcome, Report, ensure};
use crate::client::{Client, encode_query_value, with_query};
use crate::fixtures::{self, Desc, Extra, Image, OCI_EMPTY, OCI_INDEX, OCI_MANIFEST};
use crate::resp::Resp;

const WF: &str = "discovery";

/// Pushed in this (unsorted) order; listed sorted.
const TAGS: [&str; 5] = ["gamma", "alpha", "1.0", "delta", "beta"];
const SORTED: [&str; 5] = ["1.0", "alpha", "beta", "delta", "gamma"];

pub fn run(ctx: &Ctx, r: &mut Report) {
    tags(ctx, r);
    referrers(ctx, r);
    catalog(ctx, r);
}

/// The `rel="next"` target of a `Link` header (RFC 5988), if any.
pub fn next_link(resp: &Resp) -> Option<String> {
    let all = resp.header_all("Link")?;
    for part in all.split(',') {
        let Some((target, params)) = part.split_once(';') else {
            continue;
        };
        let target = target.trim();
        let is_next = params.split(';').any(|p| {
            let p = p.trim().replace(' ', "");
            p.eq_ignore_ascii_case("rel=\"next\"") || p.eq_ignore_ascii_case("rel=next")
        });
        if is_next && target.starts_with('<') && target.ends_with('>') {
            return Some(target[1..target.len() - 1].to_string());
        }
    }
    None
}

/// A list response (`{"name":..., "tags":[...]}` or `{"repositories":[...]}`): 200 and the
/// array under `field` as strings.
fn list(resp: &Resp, field: &str) -> Result<Vec<String>, String> {
    check::status(resp, &[200])?;
    let v = resp.json()?;
    let arr = v
        .get(field)
        .ok_or_else(|| format!("body has no {field:?}"))?;
    let arr = arr
        .as_array()
        .ok_or_else(|| format!("{field:?} is {arr}, expected a list"))?;
    arr.iter()
        .map(|t| {
            t.as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("{field:?} holds a non-string {t}"))
        })
        .collect()
}

fn same(got: &[String], want: &[&str], what: &str) -> Outcome {
    ensure(
        got.iter().map(String::as_str).eq(want.iter().copied()),
        || format!("{what}: expected {want:?}, got {got:?}"),
    )
}

/// end-8a / end-8b.
fn tags(ctx: &Ctx, r: &mut Report) {
    let c = ctx.client;
    let repo = ctx.repo("tags");
    let setup = || -> Result<(), String> {
        let image = Image::new("tags", 50);
        c.push_image(&repo, &image, TAGS[0])?;
        for t in &TAGS[1..] {
            c.push_manifest(&repo, t, OCI_MANIFEST, &image.manifest)?;
        }
        Ok(())
    };
    if let Err(e) = setup() {
        return r.setup_failed(WF, &format!("tags: {e}"));
    }
    let base = c.url(&format!("/v2/{repo}/tags/list"));
    let get = |query: &str| c.send(c.get(&format!("{base}{query}")));

    // "the tags MUST be in lexical order"; the body carries the repository name.
    r.check(WF, "tags list is complete and in lexical order", || {
        let resp = get("")?;
        let tags = list(&resp, "tags")?;
        let name = resp.json()?.get("name").cloned().unwrap_or(Value::Null);
        ensure(name == json!(repo), || {
            format!("\"name\" is {name}, expected {repo:?}")
        })?;
        same(&tags, &SORTED, "tags")
    });
    // "Otherwise, the response MUST include <int> results."
    r.check(WF, "tags ?n=2 returns the first 2 tags", || {
        same(&list(&get("?n=2")?, "tags")?, &SORTED[..2], "tags ?n=2")
    });
    // "A Link header MAY be included ... when additional tags are available ... rel=\"next\"".
    r.check(
        WF,
        "tags ?n=2 sends Link rel=\"next\" and following it continues the list",
        || {
            let resp = get("?n=2")?;
            let next = next_link(&resp).ok_or_else(|| {
                format!(
                    "expected a Link header with rel=\"next\", got {:?}",
                    resp.header_all("Link")
                )
            })?;
            let page = c.send(c.get(&c.resolve(&next)?))?;
            same(
                &list(&page, "tags")?,
                &SORTED[2..4],
                "tags at the Link target",
            )
        },
    );
    // "up to <int> tags *after* <tagname> will be returned".
    r.check(WF, "tags ?n=2&last=alpha continues after alpha", || {
        same(
            &list(&get("?n=2&last=alpha")?, "tags")?,
            &SORTED[2..4],
            "tags ?n=2&last=alpha",
        )
    });
    // "When using the last query parameter, the n parameter is OPTIONAL."
    r.check(WF, "tags ?last=delta without n returns the rest", || {
        same(
            &list(&get("?last=delta")?, "tags")?,
            &SORTED[4..],
            "tags ?last=delta",
        )
    });
    // "When n is zero, this endpoint MUST return an empty list, and MUST NOT include a Link".
    r.check(WF, "tags ?n=0 returns an empty list and no Link", || {
        let resp = get("?n=0")?;
        same(&list(&resp, "tags")?, &[], "tags ?n=0")?;
        ensure(resp.header("Link").is_none(), || {
            format!("unexpected Link header {:?}", resp.header_all("Link"))
        })
    });
    // end-8a failure: 404.
    r.check(
        WF,
        "tags list of an unknown repository returns 404 NAME_UNKNOWN",
        || {
            let url = c.url(&format!("/v2/{}/tags/list", ctx.repo("no-such-repo")));
            let resp = c.send(c.get(&url))?;
            check::status(&resp, &[404])?;
            check::accept_codes(&resp, &["NAME_UNKNOWN"])
        },
    );
}

/// Content of the referrers setup.
struct Referrers {
    repo: String,
    subject: Image,
    /// Has an artifactType.
    sbom: Vec<u8>,
    sbom_annotations: Map<String, Value>,
    /// Has none; its config media type stands in for it.
    sig: Vec<u8>,
    sig_annotations: Map<String, Value>,
}

const SBOM_TYPE: &str = "application/vnd.berth.conformance.sbom.v1+json";
const SIG_CONFIG_TYPE: &str = "application/vnd.berth.conformance.sig.config.v1+json";

fn annotations(kind: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        "org.opencontainers.image.created".into(),
        json!("2024-01-01T00:00:00Z"),
    );
    m.insert("org.berth.conformance.kind".into(), json!(kind));
    m
}

fn referrers_setup(ctx: &Ctx) -> Result<Referrers, String> {
    let c = ctx.client;
    let repo = ctx.repo("artifacts");
    let subject = Image::new("referrers-subject", 100);
    c.push_image(&repo, &subject, "subject")?;
    let empty = Desc::of(OCI_EMPTY, fixtures::EMPTY_JSON);
    c.push_blob(&repo, fixtures::EMPTY_JSON)?;
    let subject_desc = subject.desc();

    let sbom_annotations = annotations("sbom");
    let sbom = fixtures::manifest_bytes(
        &empty,
        std::slice::from_ref(&empty),
        Extra {
            artifact_type: Some(SBOM_TYPE),
            subject: Some(&subject_desc),
            annotations: Some(sbom_annotations.clone()),
        },
    );
    c.push_manifest(&repo, &fixtures::sha256(&sbom), OCI_MANIFEST, &sbom)?;

    let sig_config =
        serde_json::to_vec(&json!({ "nonce": fixtures::short_id() })).map_err(|e| e.to_string())?;
    c.push_blob(&repo, &sig_config)?;
    let sig_annotations = annotations("signature");
    let sig = fixtures::manifest_bytes(
        &Desc::of(SIG_CONFIG_TYPE, &sig_config),
        std::slice::from_ref(&empty),
        Extra {
            artifact_type: None,
            subject: Some(&subject_desc),
            annotations: Some(sig_annotations.clone()),
        },
    );
    c.push_manifest(&repo, &fixtures::sha256(&sig), OCI_MANIFEST, &sig)?;
    Ok(Referrers {
        repo,
        subject,
        sbom,
        sbom_annotations,
        sig,
        sig_annotations,
    })
}

/// A referrers response: 200, an OCI image index (Content-Type and body), its descriptors.
fn referrers_index(resp: &Resp) -> Result<Vec<Value>, String> {
    check::status(resp, &[200])?;
    check::content_type(resp, OCI_INDEX)?;
    let v = resp.json()?;
    ensure(v.get("schemaVersion") == Some(&json!(2)), || {
        format!("schemaVersion is {:?}, expected 2", v.get("schemaVersion"))
    })?;
    ensure(v.get("mediaType") == Some(&json!(OCI_INDEX)), || {
        format!(
            "mediaType is {:?}, expected {OCI_INDEX}",
            v.get("mediaType")
        )
    })?;
    v.get("manifests")
        .and_then(Value::as_array)
        .cloned()
        .ok_or_else(|| "index has no \"manifests\" list".to_string())
}

/// The descriptor in `list` for `bytes` must carry the manifest's type, size, artifact type
/// and annotations.
fn listed(
    list: &[Value],
    bytes: &[u8],
    artifact_type: &str,
    annotations: &Map<String, Value>,
) -> Outcome {
    let digest = fixtures::sha256(bytes);
    let d = list
        .iter()
        .find(|d| d.get("digest") == Some(&json!(digest)))
        .ok_or_else(|| format!("referrer {digest} is not listed"))?;
    let want = [
        ("mediaType", json!(OCI_MANIFEST)),
        ("size", json!(bytes.len())),
        ("artifactType", json!(artifact_type)),
        ("annotations", Value::Object(annotations.clone())),
    ];
    for (field, value) in want {
        let got = d.get(field).unwrap_or(&Value::Null);
        ensure(*got == value, || {
            format!("referrer {field} is {got}, expected {value}")
        })?;
    }
    Ok(())
}

fn digests(list: &[Value]) -> Vec<String> {
    list.iter()
        .map(|d| {
            d.get("digest")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string()
        })
        .collect()
}

/// end-12a / end-12b, "Listing Referrers".
fn referrers(ctx: &Ctx, r: &mut Report) {
    let c: &Client = ctx.client;
    let s = match referrers_setup(ctx) {
        Ok(s) => s,
        Err(e) => return r.setup_failed(WF, &format!("referrers: {e}")),
    };
    let url = |digest: &str| c.url(&format!("/v2/{}/referrers/{digest}", s.repo));
    let listing = c.send(c.get(&url(&s.subject.digest)));

    // "Upon success, the response MUST be a JSON body with an image index"; "The descriptors
    // MUST include an artifactType ... MUST include annotations".
    r.check(
        WF,
        "referrers lists each referrer with its artifactType and annotations",
        || {
            let list = referrers_index(listing.as_ref().map_err(Clone::clone)?)?;
            listed(&list, &s.sbom, SBOM_TYPE, &s.sbom_annotations)?;
            ensure(list.len() == 2, || {
                format!("expected exactly the 2 referrers, got {:?}", digests(&list))
            })
        },
    );
    // "If the artifactType is empty or missing in the image manifest, the value of
    // artifactType MUST be set to the config descriptor mediaType value."
    r.check(
        WF,
        "referrer without artifactType is listed with its config media type",
        || {
            let list = referrers_index(listing.as_ref().map_err(Clone::clone)?)?;
            listed(&list, &s.sig, SIG_CONFIG_TYPE, &s.sig_annotations)
        },
    );
    // "If a query results in no matching referrers, an empty manifest list MUST be returned."
    r.check(
        WF,
        "referrers of an unknown subject returns 200 and an empty index",
        || {
            let resp = c.send(c.get(&url(&fixtures::unknown_digest())))?;
            let list = referrers_index(&resp)?;
            ensure(list.is_empty(), || {
                format!("expected no descriptors, got {:?}", digests(&list))
            })
        },
    );
    // end-12b: "If filtering is requested and applied, the response MUST include a header
    // OCI-Filters-Applied: artifactType".
    r.check(
        WF,
        "referrers ?artifactType= returns only matches with OCI-Filters-Applied",
        || {
            let filtered = with_query(
                &url(&s.subject.digest),
                "artifactType",
                &encode_query_value(SBOM_TYPE),
            );
            let resp = c.send(c.get(&filtered))?;
            let list = referrers_index(&resp)?;
            let applied = check::header(&resp, "OCI-Filters-Applied")?;
            ensure(
                applied.split(',').any(|f| f.trim() == "artifactType"),
                || format!("OCI-Filters-Applied is {applied:?}, expected artifactType"),
            )?;
            listed(&list, &s.sbom, SBOM_TYPE, &s.sbom_annotations)?;
            ensure(list.len() == 1, || {
                format!("expected only the sbom referrer, got {:?}", digests(&list))
            })
        },
    );
    // "If the request is invalid, such as a <digest> with an invalid syntax, a 400 Bad
    // Request MUST be returned."
    r.check(WF, "referrers with an invalid digest returns 400", || {
        check::status(&c.send(c.get(&url("sha256:not-a-digest")))?, &[400])
    });
}

/// `/v2/_catalog` from the Docker Registry HTTP API V2 (apdx-1): not part of v1.1.1, checked
/// with the same `n` / `last` / `Link` rules as tag listing.
fn catalog(ctx: &Ctx, r: &mut Report) {
    let c = ctx.client;
    let names: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|x| ctx.repo(&format!("catalog/{x}")))
        .collect();
    let setup = || -> Result<(), String> {
        for n in &names {
            c.push_image(n, &Image::new("catalog", 20), "v1")?;
        }
        Ok(())
    };
    if let Err(e) = setup() {
        return r.setup_failed(WF, &format!("catalog: {e}"));
    }
    let base = c.url("/v2/_catalog");
    let want: Vec<&str> = names.iter().map(String::as_str).collect();

    r.check(
        WF,
        "catalog lists this run's repositories, in lexical order across pages",
        || {
            // Pages of 100 from the start, following Link; bounded for big registries.
            let mut all: Vec<String> = Vec::new();
            let mut url = with_query(&base, "n", "100");
            for _ in 0..500 {
                let resp = c.send(c.get(&url))?;
                let page = list(&resp, "repositories")?;
                all.extend(page);
                match next_link(&resp) {
                    Some(next) => url = c.resolve(&next)?,
                    None => break,
                }
                if want.iter().all(|w| all.iter().any(|a| a == w)) {
                    break;
                }
            }
            if let Some(w) = all.windows(2).find(|w| w[0] >= w[1]) {
                return Err(format!(
                    "not in lexical order: {:?} before {:?}",
                    w[0], w[1]
                ));
            }
            let ours: Vec<String> = all
                .into_iter()
                .filter(|a| a.starts_with(&format!("{}/catalog/", ctx.prefix)))
                .collect();
            same(&ours, &want, "this run's catalog entries")
        },
    );
    let after_a = with_query(&base, "last", &names[0]);
    r.check(
        WF,
        "catalog ?n=2&last= continues after the given repository",
        || {
            let resp = c.send(c.get(&with_query(&after_a, "n", "2")))?;
            same(
                &list(&resp, "repositories")?,
                &want[1..3],
                "catalog ?n=2&last=",
            )
        },
    );
    r.check(
        WF,
        "catalog ?n=1 sends Link rel=\"next\" and following it continues the list",
        || {
            let resp = c.send(c.get(&with_query(&after_a, "n", "1")))?;
            same(
                &list(&resp, "repositories")?,
                &want[1..2],
                "catalog ?n=1&last=",
            )?;
            let next = next_link(&resp).ok_or_else(|| {
                format!(
                    "expected a Link header with rel=\"next\", got {:?}",
                    resp.header_all("Link")
                )
            })?;
            let page = c.send(c.get(&c.resolve(&next)?))?;
            let got = list(&page, "repositories")?;
            ensure(got.first().map(String::as_str) == Some(want[2]), || {
                format!(
                    "Link target starts with {:?}, expected {:?}",
                    got.first(),
                    want[2]
                )
            })
        },
    );
}

#[cfg(test)]
mod tests {
    use super::next_link;
    use crate::resp::Resp;
    use reqwest::header::{HeaderMap, HeaderValue};

    fn with_link(values: &[&str]) -> Resp {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append("Link", HeaderValue::from_str(v).unwrap());
        }
        Resp {
            method: reqwest::Method::GET,
            url: String::new(),
            status: 200,
            headers,
            body: Vec::new(),
            body_error: None,
        }
    }

    #[test]
    fn link_next() {
        let r = with_link(&[r#"</v2/a/tags/list?n=2&last=b>; rel="next""#]);
        assert_eq!(next_link(&r).as_deref(), Some("/v2/a/tags/list?n=2&last=b"));
        let r = with_link(&[r#"<http://x/prev>; rel="prev""#, "<http://x/n>;rel=next"]);
        assert_eq!(next_link(&r).as_deref(), Some("http://x/n"));
        assert_eq!(next_link(&with_link(&[])), None);
        assert_eq!(next_link(&with_link(&["<http://x/p>; rel=\"prev\""])), None);
    }
}
