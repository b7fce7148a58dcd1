//! Manifest endpoints: GET/HEAD (end-3), PUT (end-7), DELETE (end-9).

use axum::{
    body::Body,
    http::{HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::{Ctx, docker_content_digest, empty};
use crate::{
    error::{Error, Result},
    oci::{Reference, RepoName},
    registry::Override,
};

pub(super) async fn get(
    ctx: Ctx<'_>,
    name: RepoName,
    reference: Reference,
    head: bool,
) -> Result<Response> {
    let who = &ctx.access.identity;
    let manifest = ctx
        .registry
        .pull_manifest(&name, &reference, !head, Some(&who.name))
        .await?;
    if !head {
        ctx.registry.count_by(&name, &who.subject, &who.name, false);
    }
    let headers = [
        (header::CONTENT_TYPE, manifest.media_type.clone()),
        (header::CONTENT_LENGTH, manifest.size.to_string()),
        (docker_content_digest(), manifest.digest.to_string()),
        (header::ETAG, format!("\"{}\"", manifest.digest)),
    ];
    if head {
        return Ok(empty(StatusCode::OK, &headers));
    }
    let mut response = (StatusCode::OK, manifest.payload).into_response();
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, v);
        }
    }
    Ok(response)
}

/// How many times the manifest limit a refused body may be, and still be read to its end
/// so that the client gets the 413.
const DRAINED_MAX_FACTOR: u64 = 4;

pub(super) async fn put(
    ctx: Ctx<'_>,
    name: RepoName,
    reference: Reference,
    body: Body,
) -> Result<Response> {
    let limit = ctx.registry.limits().manifest_max_bytes;
    let too_large = || Error::TooLarge {
        message: format!("manifest is larger than the limit of {limit} bytes"),
    };
    let length = ctx
        .header(header::CONTENT_LENGTH)
        .and_then(|l| l.parse::<u64>().ok());
    if let Some(length) = length.filter(|l| *l > limit as u64) {
        // Clients send the whole body before reading the answer (none waits for `100
        // Continue`): a refusal sent while they still write reaches them as a broken pipe.
        // So a body up to a few times the limit is read and dropped first.
        if length <= DRAINED_MAX_FACTOR * limit as u64 {
            // Frame by frame, so nothing of it is held.
            let mut body = body;
            while let Some(Ok(_)) = body.frame().await {}
        }
        return Err(too_large());
    }
    let payload = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => return Err(too_large()),
        Err(e) => {
            return Err(Error::ManifestInvalid(format!(
                "request body could not be read to its end: {e}"
            )));
        }
    };
    let content_type = ctx.header(header::CONTENT_TYPE);
    let put = ctx
        .registry
        .put_manifest(
            &name,
            &reference,
            content_type,
            payload,
            Override::for_maintainer(ctx.access.grant.maintain),
            Some(&ctx.access.identity.name),
        )
        .await?;
    let who = &ctx.access.identity;
    ctx.registry.count_by(&name, &who.subject, &who.name, true);
    let mut headers = vec![
        (
            header::LOCATION,
            ctx.location(&format!("/v2/{name}/manifests/{}", put.digest)),
        ),
        (docker_content_digest(), put.digest.to_string()),
        (header::CONTENT_LENGTH, "0".into()),
    ];
    if let Some(subject) = put.subject {
        headers.push((HeaderName::from_static("oci-subject"), subject.to_string()));
    }
    Ok(empty(StatusCode::CREATED, &headers))
}

pub(super) async fn delete(ctx: Ctx<'_>, name: RepoName, reference: Reference) -> Result<Response> {
    ctx.registry
        .delete_manifest(
            &name,
            &reference,
            Override::for_maintainer(ctx.access.grant.maintain),
            Some(&ctx.access.identity.name),
        )
        .await?;
    let who = &ctx.access.identity;
    ctx.registry.count_by(&name, &who.subject, &who.name, true);
    Ok(empty(
        StatusCode::ACCEPTED,
        &[(header::CONTENT_LENGTH, "0".into())],
    ))
}
