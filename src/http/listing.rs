//! Listings: tags (end-8), the catalog, and referrers (end-12). Pages are cut by the
//! database; a `Link` header points at the next page while more remain.

use axum::{
    Json,
    http::{HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use super::Ctx;
use crate::{
    error::{Error, Result},
    oci::{Digest, RepoName, Tag, manifest::OCI_INDEX},
    registry::Page,
};

pub(super) async fn tags(ctx: Ctx<'_>, name: RepoName) -> Result<Response> {
    let n = ctx.query.page_size()?;
    let last = match ctx.query.get("last") {
        None | Some("") => None,
        Some(l) => Some(
            l.parse::<Tag>()
                .map_err(|e| Error::BadRequest(format!("last: {e}")))?,
        ),
    };
    let page = ctx.registry.list_tags(&name, last.as_ref(), n).await?;
    let link = next_link(&page, n, |last, n| {
        format!("/v2/{name}/tags/list?n={n}&last={last}")
    });
    let body = json!({ "name": name.as_str(), "tags": page.items });
    Ok(with_link(Json(body).into_response(), link))
}

pub(super) async fn catalog(ctx: Ctx<'_>) -> Result<Response> {
    let n = ctx.query.page_size()?;
    let viewer = ctx
        .auth
        .enabled()
        .then(|| ctx.auth.catalog_viewer(&ctx.access.identity));
    let page = ctx
        .registry
        .catalog(viewer.as_ref(), ctx.query.get("last"), n)
        .await?;
    let link = next_link(&page, n, |last, n| {
        format!("/v2/_catalog?n={n}&last={last}")
    });
    Ok(with_link(
        Json(json!({ "repositories": page.items })).into_response(),
        link,
    ))
}

pub(super) async fn referrers(ctx: Ctx<'_>, name: RepoName, subject: Digest) -> Result<Response> {
    let n = ctx.query.page_size()?;
    let artifact_type = ctx.query.get("artifactType").filter(|t| !t.is_empty());
    // A repository the caller may not read answers as a missing one: no referrers.
    let page = if ctx.access.grant.pull {
        ctx.registry
            .referrers(&name, &subject, artifact_type, ctx.query.get("last"), n)
            .await?
    } else {
        Page::empty()
    };
    let link = next_link(&page, n, |last, n| {
        let filter = artifact_type
            .map(|t| {
                format!(
                    "&artifactType={}",
                    url::form_urlencoded::byte_serialize(t.as_bytes()).collect::<String>()
                )
            })
            .unwrap_or_default();
        format!("/v2/{name}/referrers/{subject}?n={n}&last={last}{filter}")
    });
    let manifests: Vec<Value> = page
        .items
        .iter()
        .map(|r| {
            let mut d = json!({ "mediaType": r.media_type, "digest": r.digest, "size": r.size });
            if let Some(t) = &r.artifact_type {
                d["artifactType"] = json!(t);
            }
            if let Some(a) = r
                .annotations
                .as_deref()
                .and_then(|a| serde_json::from_str::<Value>(a).ok())
            {
                d["annotations"] = a;
            }
            d
        })
        .collect();
    let body = json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests });
    let mut response = (StatusCode::OK, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(OCI_INDEX));
    if artifact_type.is_some() {
        headers.insert(
            HeaderName::from_static("oci-filters-applied"),
            HeaderValue::from_static("artifactType"),
        );
    }
    Ok(with_link(response, link))
}

/// The `Link` to the page after `page`, if more remain.
fn next_link<T: Last>(
    page: &Page<T>,
    n: Option<u32>,
    url: impl Fn(&str, usize) -> String,
) -> Option<String> {
    let last = page.items.last().filter(|_| page.more)?;
    let n = n.map(|n| n as usize).unwrap_or(page.items.len());
    let last = url::form_urlencoded::byte_serialize(last.last().as_bytes()).collect::<String>();
    Some(format!("<{}>; rel=\"next\"", url(&last, n)))
}

/// The key a listing continues after.
trait Last {
    fn last(&self) -> &str;
}

impl Last for String {
    fn last(&self) -> &str {
        self
    }
}

impl Last for crate::meta::manifests::Referrer {
    fn last(&self) -> &str {
        self.digest.as_str()
    }
}

fn with_link(mut response: Response, link: Option<String>) -> Response {
    if let Some(v) = link.and_then(|l| HeaderValue::from_str(&l).ok()) {
        response.headers_mut().insert(header::LINK, v);
    }
    response
}
