//! Blob endpoints: GET/HEAD (end-2, with `Range`) and DELETE (end-10).

use axum::{
    body::Body,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

use super::{Ctx, docker_content_digest, empty};
use crate::{
    error::{Error, Result},
    oci::{Digest, RepoName},
    registry::{BlobFill, RangeRequest},
};

pub(super) async fn get(
    ctx: Ctx<'_>,
    name: RepoName,
    digest: Digest,
    head: bool,
) -> Result<Response> {
    match serve(&ctx, &name, &digest, head).await {
        // A miss under a pull-through cache prefix: the upstream's bytes, as they are
        // cached (a hit costs a proxied repository nothing more than any other).
        Err(Error::BlobUnknown | Error::NameUnknown) if ctx.registry.is_proxied(&name) => {
            match ctx.registry.proxy_blob(&name, &digest).await? {
                Some(fill) => Ok(filled(fill, &digest, head)),
                // cached meanwhile by a concurrent request this one waited for
                None => serve(&ctx, &name, &digest, head).await,
            }
        }
        other => other,
    }
}

/// The blob as this registry holds it.
async fn serve(ctx: &Ctx<'_>, name: &RepoName, digest: &Digest, head: bool) -> Result<Response> {
    if head {
        let size = ctx.registry.stat_blob(name, digest).await?;
        return Ok(empty(
            StatusCode::OK,
            &[
                (header::CONTENT_LENGTH, size.to_string()),
                (header::CONTENT_TYPE, "application/octet-stream".into()),
                (header::ACCEPT_RANGES, "bytes".into()),
                (docker_content_digest(), digest.to_string()),
            ],
        ));
    }
    if let Some(url) = ctx.registry.blob_redirect(name, digest).await? {
        // The client sends its Range, if any, to the store, which answers it.
        return Ok(empty(
            StatusCode::TEMPORARY_REDIRECT,
            &[
                (header::LOCATION, url),
                (header::CONTENT_LENGTH, "0".into()),
                (docker_content_digest(), digest.to_string()),
            ],
        ));
    }
    // RFC 9110 §14.2: a Range that does not parse (another unit, several ranges, last
    // before first) is ignored and the whole blob served; one past the end is a 416.
    let range = ctx.header(header::RANGE).and_then(RangeRequest::parse);
    let blob = ctx.registry.open_blob(name, digest, range).await?;
    let (status, length) = match &blob.range {
        Some(r) => (StatusCode::PARTIAL_CONTENT, r.end - r.start),
        None => (StatusCode::OK, blob.size),
    };
    let body = blob.body.map(Body::from_stream).unwrap_or_else(Body::empty);
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    let mut set = |name, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    set(header::CONTENT_LENGTH, length.to_string());
    set(header::CONTENT_TYPE, "application/octet-stream".into());
    set(header::ACCEPT_RANGES, "bytes".into());
    set(docker_content_digest(), digest.to_string());
    if let Some(r) = &blob.range {
        set(
            header::CONTENT_RANGE,
            format!("bytes {}-{}/{}", r.start, r.end - 1, blob.size),
        );
    }
    Ok(response)
}

/// The answer to a blob GET (or HEAD) that the pull-through cache is fetching: the whole
/// blob (a `Range` is not served from a download in progress), with the upstream's length.
/// A HEAD leaves the download to go on without it.
fn filled(fill: BlobFill, digest: &Digest, head: bool) -> Response {
    let body = if head {
        Body::empty()
    } else {
        Body::from_stream(fill.body)
    };
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    if let Some(size) = fill.size
        && let Ok(v) = HeaderValue::from_str(&size.to_string())
    {
        headers.insert(header::CONTENT_LENGTH, v);
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = HeaderValue::from_str(digest.as_str()) {
        headers.insert(docker_content_digest(), v);
    }
    response
}

pub(super) async fn delete(ctx: Ctx<'_>, name: RepoName, digest: Digest) -> Result<Response> {
    ctx.registry.delete_blob(&name, &digest).await?;
    Ok(empty(
        StatusCode::ACCEPTED,
        &[(header::CONTENT_LENGTH, "0".into())],
    ))
}
