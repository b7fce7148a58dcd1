//! Upload endpoints: POST (end-4a, end-4b, end-11), PATCH (end-5), PUT (end-6), GET (end-13)
//! and DELETE (cancel).

use axum::{
    body::Body,
    http::{HeaderName, StatusCode, header},
    response::Response,
};

use super::{Ctx, docker_content_digest, empty, route::parse_digest};
use crate::{
    connections::slow_body_limited,
    error::{Error, Result},
    oci::{Digest, RepoName},
    registry::Mounted,
};

pub(super) async fn start(ctx: Ctx<'_>, name: RepoName, body: Body) -> Result<Response> {
    // Access control decided whether a mount may be tried; when not, a plain session.
    if let Some(mount) = ctx.query.get("mount").filter(|_| ctx.access.may_mount) {
        let digest = parse_digest(mount)?;
        let from = match ctx.query.get("from") {
            Some(f) => Some(
                f.parse::<RepoName>()
                    .map_err(|e| Error::NameInvalid(format!("from: {e}")))?,
            ),
            None => None,
        };
        return match ctx
            .registry
            .mount_blob(&name, &digest, from.as_ref())
            .await?
        {
            Mounted::Blob { .. } => Ok(created_blob(ctx, &name, &digest)),
            Mounted::Session { id } => Ok(session(ctx, StatusCode::ACCEPTED, &name, &id, 0)),
        };
    }
    if let Some(digest) = ctx.query.get("digest") {
        let digest = parse_digest(digest)?;
        ctx.registry
            .put_blob(
                &name,
                &digest,
                slow_body_limited(
                    body,
                    ctx.registry.body_idle_timeout(),
                    ctx.registry.min_body_rate(),
                ),
            )
            .await?;
        return Ok(created_blob(ctx, &name, &digest));
    }
    let id = ctx.registry.start_upload(&name).await?;
    Ok(session(ctx, StatusCode::ACCEPTED, &name, &id, 0))
}

pub(super) async fn status(ctx: Ctx<'_>, name: RepoName, id: String) -> Result<Response> {
    let size = ctx.registry.upload_status(&name, &id).await?;
    Ok(session(ctx, StatusCode::NO_CONTENT, &name, &id, size))
}

pub(super) async fn append(
    ctx: Ctx<'_>,
    name: RepoName,
    id: String,
    body: Body,
) -> Result<Response> {
    let range = content_range(ctx)?;
    let size = ctx
        .registry
        .append_upload(
            &name,
            &id,
            range,
            slow_body_limited(
                body,
                ctx.registry.body_idle_timeout(),
                ctx.registry.min_body_rate(),
            ),
        )
        .await?;
    Ok(session(ctx, StatusCode::ACCEPTED, &name, &id, size))
}

pub(super) async fn finish(
    ctx: Ctx<'_>,
    name: RepoName,
    id: String,
    body: Body,
) -> Result<Response> {
    let digest = ctx
        .query
        .get("digest")
        .ok_or_else(|| {
            Error::DigestInvalid(
                "the digest query parameter is required to complete an upload".into(),
            )
        })
        .and_then(parse_digest)?;
    let range = content_range(ctx)?;
    ctx.registry
        .finish_upload(
            &name,
            &id,
            &digest,
            range,
            slow_body_limited(
                body,
                ctx.registry.body_idle_timeout(),
                ctx.registry.min_body_rate(),
            ),
        )
        .await?;
    Ok(created_blob(ctx, &name, &digest))
}

pub(super) async fn cancel(ctx: Ctx<'_>, name: RepoName, id: String) -> Result<Response> {
    ctx.registry.cancel_upload(&name, &id).await?;
    Ok(empty(StatusCode::NO_CONTENT, &[]))
}

/// The chunk's `Content-Range`, if the client sent one.
fn content_range(ctx: Ctx<'_>) -> Result<Option<(u64, u64)>> {
    match ctx.header(header::CONTENT_RANGE) {
        None => Ok(None),
        Some(h) => parse_content_range(h).map(Some).ok_or_else(|| {
            Error::BlobUploadInvalid(format!("Content-Range {h:?} is not of the form START-END"))
        }),
    }
}

/// `Content-Range: START-END` as the spec writes it; `bytes START-END/TOTAL` (RFC 9110) is
/// accepted too since some clients send it.
fn parse_content_range(h: &str) -> Option<(u64, u64)> {
    let h = h.trim();
    let h = h
        .strip_prefix("bytes")
        .map(|r| r.trim_start_matches([' ', '=']))
        .unwrap_or(h);
    let h = h.split('/').next()?;
    let (start, end) = h.split_once('-')?;
    let num = |s: &str| {
        s.trim()
            .parse::<u64>()
            .ok()
            .filter(|_| s.trim().bytes().all(|b| b.is_ascii_digit()))
    };
    Some((num(start)?, num(end)?))
}

fn created_blob(ctx: Ctx<'_>, name: &RepoName, digest: &Digest) -> Response {
    empty(
        StatusCode::CREATED,
        &[
            (
                header::LOCATION,
                ctx.location(&format!("/v2/{name}/blobs/{digest}")),
            ),
            (docker_content_digest(), digest.to_string()),
            (header::CONTENT_LENGTH, "0".into()),
        ],
    )
}

fn session(ctx: Ctx<'_>, status: StatusCode, name: &RepoName, id: &str, size: u64) -> Response {
    empty(
        status,
        &[
            (
                header::LOCATION,
                ctx.location(&format!("/v2/{name}/blobs/uploads/{id}")),
            ),
            (header::RANGE, format!("0-{}", size.saturating_sub(1))),
            (HeaderName::from_static("docker-upload-uuid"), id.to_owned()),
            (header::CONTENT_LENGTH, "0".into()),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::parse_content_range;

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("0-65535"), Some((0, 65535)));
        assert_eq!(parse_content_range("bytes 10-19/100"), Some((10, 19)));
        assert_eq!(parse_content_range("bytes=10-19"), Some((10, 19)));
        for bad in ["", "-", "1-", "a-b", "+1-2", "1--2"] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }
}
