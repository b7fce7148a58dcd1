//! The one error type of the request path, and how each variant reaches the client: the spec's
//! error codes (spec.md, "Error Codes") with their status codes and JSON body.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

use crate::oci::Digest;

/// The request path's result: [`Error`] unless said otherwise.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a request can fail with, each variant one spec error code (or a server fault).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The blob is not in this repository (BLOB_UNKNOWN, 404).
    #[error("blob unknown to registry")]
    BlobUnknown,
    /// The upload cannot go on as asked (BLOB_UPLOAD_INVALID, 400).
    #[error("{0}")]
    BlobUploadInvalid(String),
    /// No such upload session (BLOB_UPLOAD_UNKNOWN, 404).
    #[error("blob upload unknown to registry")]
    BlobUploadUnknown,
    /// An out-of-order or overlapping chunk (spec: 416 on PATCH); `size` is what was received.
    #[error("chunk does not start at the current end of the upload ({size} bytes received)")]
    ChunkOutOfOrder {
        /// Bytes the session holds.
        size: u64,
    },
    /// A malformed digest, or content that does not match its digest (DIGEST_INVALID, 400).
    #[error("{0}")]
    DigestInvalid(String),
    /// A manifest names a blob or manifest this repository lacks (MANIFEST_BLOB_UNKNOWN, 400).
    #[error("manifest references {0}, which is unknown to this repository")]
    ManifestBlobUnknown(Digest),
    /// A manifest that does not parse or breaks a rule (MANIFEST_INVALID, 400).
    #[error("{0}")]
    ManifestInvalid(String),
    /// No such manifest or tag in this repository (MANIFEST_UNKNOWN, 404).
    #[error("manifest unknown to registry")]
    ManifestUnknown,
    /// A manifest reference outside the tag grammar (MANIFEST_INVALID, 400, to a PUT: the
    /// spec keeps TAG_INVALID for legacy schema1 only); reads and deletes of such a reference
    /// answer [`Error::ManifestUnknown`], as for any manifest that is not there.
    #[error("{0}")]
    TagInvalid(String),
    /// A repository name outside the spec's grammar (NAME_INVALID, 400).
    #[error("{0}")]
    NameInvalid(String),
    /// No such repository (NAME_UNKNOWN, 404).
    #[error("repository name not known to registry")]
    NameUnknown,
    /// A length that does not match the content (SIZE_INVALID, 400).
    #[error("{0}")]
    SizeInvalid(String),
    /// Content over a configured limit (SIZE_INVALID, 413).
    #[error("{message}")]
    TooLarge {
        /// Which limit, and what it is.
        message: String,
    },
    /// A `Range` the blob cannot satisfy; the client learns the real size.
    #[error("requested range not satisfiable for a blob of {size} bytes")]
    RangeNotSatisfiable {
        /// The blob's size in bytes.
        size: u64,
    },
    /// Something the spec allows a registry not to do (UNSUPPORTED, 400).
    #[error("{0}")]
    Unsupported(String),
    /// A malformed request outside the spec's own codes (UNSUPPORTED, 400).
    #[error("{0}")]
    BadRequest(String),
    /// No identity, or one that could not be verified (spec: UNAUTHORIZED, 401).
    #[error("authentication required: {0}")]
    Unauthorized(String),
    /// A known identity without the access asked for (spec: DENIED, 403).
    #[error("requested access to the resource is denied: {0}")]
    Denied(String),
    /// Too many failed logins from this address or for this user (spec: TOOMANYREQUESTS).
    #[error("too many failed logins; retry after {retry_after} seconds")]
    TooManyRequests {
        /// Seconds until the window ends (`Retry-After`).
        retry_after: u64,
    },
    /// The thing to create exists already (management API only).
    #[error("{0}")]
    Conflict(String),
    /// No such endpoint (404).
    #[error("no such endpoint")]
    NotFound,
    /// The endpoint exists, not with this method (405).
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed,
    /// A backend (blob store or index) that failed after its client's retries: the request
    /// may succeed later, so it is a 503 rather than a 500. `what` names the backend.
    #[error("the {what} is unavailable; try again later")]
    Unavailable {
        /// The backend: "blob store" or "metadata index".
        what: &'static str,
        /// What its client reported.
        source: anyhow::Error,
    },
    /// A backend whose disk (or quota) is full (507): the request may succeed once space is
    /// freed, with no restart; what was being written was not kept.
    #[error("the {what} is out of space (no space left on device); free space, then retry")]
    OutOfSpace {
        /// The backend: "blob store" or "metadata index".
        what: &'static str,
        /// What its client reported.
        source: anyhow::Error,
    },
    /// An upstream of the pull-through cache that answered wrongly (502) or could not be
    /// reached (503), for content not cached; the message names the upstream and its answer.
    #[error("{message}")]
    Upstream {
        /// 502 or 503.
        status: StatusCode,
        /// Which upstream, and what it answered.
        message: String,
    },
    /// A fault of ours (500); the client learns nothing more, the log everything.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl Error {
    /// The spec's error code (`errors[].code`).
    pub fn code(&self) -> &'static str {
        match self {
            Error::BlobUnknown => "BLOB_UNKNOWN",
            Error::BlobUploadInvalid(_) | Error::ChunkOutOfOrder { .. } => "BLOB_UPLOAD_INVALID",
            Error::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            Error::DigestInvalid(_) => "DIGEST_INVALID",
            Error::ManifestBlobUnknown(_) => "MANIFEST_BLOB_UNKNOWN",
            Error::ManifestInvalid(_) | Error::TagInvalid(_) => "MANIFEST_INVALID",
            Error::ManifestUnknown => "MANIFEST_UNKNOWN",
            Error::NameInvalid(_) => "NAME_INVALID",
            Error::NameUnknown => "NAME_UNKNOWN",
            Error::SizeInvalid(_) | Error::TooLarge { .. } | Error::RangeNotSatisfiable { .. } => {
                "SIZE_INVALID"
            }
            Error::Unauthorized(_) => "UNAUTHORIZED",
            Error::Denied(_) => "DENIED",
            Error::TooManyRequests { .. } => "TOOMANYREQUESTS",
            Error::Conflict(_) => "CONFLICT",
            Error::Unsupported(_)
            | Error::BadRequest(_)
            | Error::NotFound
            | Error::MethodNotAllowed => "UNSUPPORTED",
            // Not spec codes: a server fault is no client's mistake to name. UNAVAILABLE is
            // the code Distribution uses with 503.
            Error::Unavailable { .. } | Error::OutOfSpace { .. } | Error::Upstream { .. } => {
                "UNAVAILABLE"
            }
            Error::Internal(_) => "UNKNOWN",
        }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BlobUnknown
            | Error::BlobUploadUnknown
            | Error::ManifestUnknown
            | Error::NameUnknown
            | Error::NotFound => StatusCode::NOT_FOUND,
            Error::ChunkOutOfOrder { .. } | Error::RangeNotSatisfiable { .. } => {
                StatusCode::RANGE_NOT_SATISFIABLE
            }
            Error::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Denied(_) => StatusCode::FORBIDDEN,
            Error::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Error::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Error::OutOfSpace { .. } => StatusCode::INSUFFICIENT_STORAGE,
            Error::Upstream { status, .. } => *status,
            Error::BlobUploadInvalid(_)
            | Error::DigestInvalid(_)
            | Error::ManifestBlobUnknown(_)
            | Error::ManifestInvalid(_)
            | Error::NameInvalid(_)
            | Error::TagInvalid(_)
            | Error::SizeInvalid(_)
            | Error::Unsupported(_)
            | Error::BadRequest(_) => StatusCode::BAD_REQUEST,
        }
    }

    fn detail(&self) -> serde_json::Value {
        match self {
            Error::ManifestBlobUnknown(d) => serde_json::json!({ "digest": d }),
            Error::ChunkOutOfOrder { size } | Error::RangeNotSatisfiable { size } => {
                serde_json::json!({ "size": size })
            }
            _ => serde_json::Value::Null,
        }
    }
}

/// An error's message followed by those of its causes, for reports and logs read by operators
/// (a 503's own message says only that a backend failed, its causes say how).
pub fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Whether `e`, or an error it wraps, is a full disk or quota (ENOSPC, EDQUOT).
fn out_of_space(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && (io.kind() == std::io::ErrorKind::StorageFull
                || io.kind() == std::io::ErrorKind::QuotaExceeded)
        {
            return true;
        }
        next = e.source();
    }
    false
}

impl From<object_store::Error> for Error {
    fn from(e: object_store::Error) -> Self {
        use object_store::Error as E;
        if out_of_space(&e) {
            return Error::OutOfSpace {
                what: "blob store",
                source: anyhow::Error::new(e),
            };
        }
        match e {
            // Answers about objects: a fault of ours if they reach a client.
            E::NotFound { .. }
            | E::AlreadyExists { .. }
            | E::Precondition { .. }
            | E::NotModified { .. }
            | E::InvalidPath { .. }
            | E::NotSupported { .. }
            | E::NotImplemented { .. }
            | E::PermissionDenied { .. }
            | E::Unauthenticated { .. }
            | E::UnknownConfigurationKey { .. } => {
                Error::Internal(anyhow::Error::new(e).context("blob store"))
            }
            // Transport failures and server errors that survived the client's retries.
            e => Error::Unavailable {
                what: "blob store",
                source: anyhow::Error::new(e),
            },
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        // SQLite's SQLITE_FULL (13) and PostgreSQL's disk_full (53100), or ENOSPC below.
        let full = match &e {
            sqlx::Error::Database(db) => db.code().is_some_and(|c| c == "13" || c == "53100"),
            other => out_of_space(other),
        };
        if full {
            return Error::OutOfSpace {
                what: "metadata index",
                source: anyhow::Error::new(e),
            };
        }
        match e {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) => {
                Error::Unavailable {
                    what: "metadata index",
                    source: anyhow::Error::new(e),
                }
            }
            // PostgreSQL's SQLSTATE classes for a server going away or refusing for now:
            // 08 connection exception, 53 insufficient resources (too many connections),
            // 57 operator intervention (shutdown, "cannot connect now"), and 40 transaction
            // rollback (serialization failure, deadlock): all worth trying again later.
            sqlx::Error::Database(ref db)
                if db
                    .code()
                    .is_some_and(|c| ["08", "40", "53", "57"].iter().any(|k| c.starts_with(k))) =>
            {
                Error::Unavailable {
                    what: "metadata index",
                    source: anyhow::Error::new(e),
                }
            }
            e => Error::Internal(anyhow::Error::new(e).context("metadata index")),
        }
    }
}

/// A server-side failure behind a response (a 500 or 503), carried to [`log_faults`] as a
/// response extension: the conversion to a response only describes it, and the boundary
/// logs it once.
#[derive(Debug, Clone)]
pub struct Fault {
    /// The backend that was unavailable, if that was the failure.
    backend: Option<&'static str>,
    /// The error, formatted for the log.
    error: String,
    /// Answered by the management API, which logs the error's debug form.
    api: bool,
}

impl Fault {
    /// The fault behind `e` as `/v2/` reports it, if `e` is a server error.
    fn of(e: &Error) -> Option<Fault> {
        let (backend, error) = match e {
            Error::Internal(e) => (None, format!("{e:#}")),
            Error::Unavailable { what, source } | Error::OutOfSpace { what, source } => {
                (Some(*what), format!("{source:#}"))
            }
            _ => return None,
        };
        Some(Fault {
            backend,
            error,
            api: false,
        })
    }

    /// The fault behind `e` as the management API reports it, if `e` is a server error.
    pub fn of_api(e: &Error) -> Option<Fault> {
        matches!(
            e,
            Error::Internal(_) | Error::Unavailable { .. } | Error::OutOfSpace { .. }
        )
        .then(|| Fault {
            backend: None,
            error: format!("{e:?}"),
            api: true,
        })
    }

    /// Marks `response` as answering this fault, for [`log_faults`].
    pub fn attach(self, response: &mut Response) {
        response.extensions_mut().insert(self);
    }
}

/// The request trace's end: tower-http's usual line, then the server-side failure the
/// response answers, logged once inside the request's span. [`crate::serve`] hands it to its
/// `TraceLayer` rather than adding a layer of its own, which every request would pay for.
pub fn log_faults<B>(
    response: &axum::http::Response<B>,
    latency: std::time::Duration,
    span: &tracing::Span,
) {
    use tower_http::trace::OnResponse as _;
    tower_http::trace::DefaultOnResponse::default().on_response(response, latency, span);
    if let Some(fault) = response.extensions().get::<Fault>() {
        let error = fault.error.as_str();
        match (fault.api, fault.backend) {
            // Recorded as the debug text it is (unquoted), as `?e` recorded it.
            (true, _) => tracing::error!(error = %error, "api request failed"),
            (false, Some(backend)) => tracing::error!(backend, error, "request failed"),
            (false, None) => tracing::error!(error, "request failed"),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let fault = Fault::of(&self);
        let detail = self.detail();
        let mut entry = serde_json::json!({ "code": self.code(), "message": self.to_string() });
        if !detail.is_null() {
            entry["detail"] = detail;
        }
        let body = serde_json::json!({ "errors": [entry] }).to_string();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        match self {
            Error::RangeNotSatisfiable { size } => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    headers.insert(header::CONTENT_RANGE, v);
                }
            }
            Error::TooManyRequests { retry_after } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            }
            Error::ChunkOutOfOrder { size } => {
                // Tell the client where to resume (spec: GET the upload status after a 416).
                if let Ok(v) = HeaderValue::from_str(&format!("0-{}", size.saturating_sub(1))) {
                    headers.insert(header::RANGE, v);
                }
            }
            _ => {}
        }
        if let Some(fault) = fault {
            fault.attach(&mut response);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_error_is_a_spec_code_and_4xx() {
        let spec = [
            "BLOB_UNKNOWN",
            "BLOB_UPLOAD_INVALID",
            "BLOB_UPLOAD_UNKNOWN",
            "DIGEST_INVALID",
            "MANIFEST_BLOB_UNKNOWN",
            "MANIFEST_INVALID",
            "MANIFEST_UNKNOWN",
            "NAME_INVALID",
            "NAME_UNKNOWN",
            "SIZE_INVALID",
            "UNAUTHORIZED",
            "DENIED",
            "UNSUPPORTED",
            "TOOMANYREQUESTS",
        ];
        let d = Digest::sha256_of(b"");
        let all = [
            Error::BlobUnknown,
            Error::BlobUploadInvalid("x".into()),
            Error::BlobUploadUnknown,
            Error::ChunkOutOfOrder { size: 3 },
            Error::DigestInvalid("x".into()),
            Error::ManifestBlobUnknown(d),
            Error::ManifestInvalid("x".into()),
            Error::ManifestUnknown,
            Error::NameInvalid("x".into()),
            Error::NameUnknown,
            Error::SizeInvalid("x".into()),
            Error::TooLarge {
                message: "x".into(),
            },
            Error::RangeNotSatisfiable { size: 3 },
            Error::Unsupported("x".into()),
            Error::BadRequest("x".into()),
            Error::NotFound,
            Error::MethodNotAllowed,
        ];
        for e in all {
            assert!(spec.contains(&e.code()), "{e:?}");
            assert!(e.status().is_client_error(), "{e:?}");
        }
    }

    #[test]
    fn a_store_that_stays_down_is_a_503() {
        let down = object_store::Error::Generic {
            store: "S3",
            source: "connection refused after 10 retries".into(),
        };
        let e = Error::from(down);
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.code(), "UNAVAILABLE");
        assert_eq!(
            e.to_string(),
            "the blob store is unavailable; try again later"
        );
        let missing = object_store::Error::NotFound {
            path: "blobs/x".into(),
            source: "gone".into(),
        };
        assert_eq!(
            Error::from(missing).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        let r = Error::from(sqlx::Error::PoolTimedOut).into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn only_server_errors_carry_a_fault_to_log() {
        let r = Error::Internal(anyhow::anyhow!("disk on fire")).into_response();
        let fault = r.extensions().get::<Fault>().expect("a fault to log");
        assert_eq!(fault.error, "disk on fire");
        assert_eq!(fault.backend, None);
        let r = Error::from(sqlx::Error::PoolTimedOut).into_response();
        assert_eq!(
            r.extensions().get::<Fault>().and_then(|f| f.backend),
            Some("metadata index")
        );
        let r = Error::NameUnknown.into_response();
        assert!(r.extensions().get::<Fault>().is_none());
        assert!(Fault::of_api(&Error::NameUnknown).is_none());
        assert!(Fault::of_api(&Error::Internal(anyhow::anyhow!("x"))).is_some_and(|f| f.api));
    }

    #[test]
    fn range_errors_carry_their_headers() {
        let r = Error::RangeNotSatisfiable { size: 10 }.into_response();
        assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(r.headers()[header::CONTENT_RANGE], "bytes */10");
        let r = Error::ChunkOutOfOrder { size: 10 }.into_response();
        assert_eq!(r.headers()[header::RANGE], "0-9");
    }
}
