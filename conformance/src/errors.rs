//! The spec's error format ("API" > "Error Codes") and the `errors` group, which judges every
//! JSON error body the registry sent during the run.

use serde_json::Value;

use crate::check::Report;
use crate::client::Client;

const WF: &str = "errors";

/// code-1 … code-14: the only values the `code` field may take.
pub const SPEC_CODES: [&str; 14] = [
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

/// Judges a 4xx/5xx body. `None` when the body is not JSON at all (a 4xx body "MAY" be in any
/// format); otherwise whether it has the required shape:
/// `{"errors":[{"code": <spec code>, "message"?: string, "detail"?: any}, ...]}`.
pub fn validate_body(body: &[u8]) -> Option<Result<(), String>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    Some(validate_value(&v))
}

fn validate_value(v: &Value) -> Result<(), String> {
    let errors = v
        .get("errors")
        .and_then(Value::as_array)
        .ok_or_else(|| "JSON body without an \"errors\" array".to_string())?;
    if errors.is_empty() {
        return Err("\"errors\" array is empty".into());
    }
    for e in errors {
        let code = e
            .get("code")
            .and_then(Value::as_str)
            .ok_or_else(|| "error entry without a string \"code\"".to_string())?;
        if !SPEC_CODES.contains(&code) {
            return Err(format!("code {code:?} is not in the spec's code table"));
        }
        if let Some(m) = e.get("message") {
            if !m.is_string() {
                return Err(format!("\"message\" of {code} is not a string"));
            }
        }
    }
    Ok(())
}

/// The `code` values of a spec-shaped error body, in order (empty if the body is not one).
pub fn codes_in(body: &[u8]) -> Vec<String> {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    v.get("errors")
        .and_then(Value::as_array)
        .map(|errs| {
            errs.iter()
                .filter_map(|e| e.get("code").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs last: looks back over every response of the run.
pub fn run(client: &Client, r: &mut Report) {
    let seen = client.observed();
    r.check_noted(
        WF,
        "every JSON error body has errors[].code from the spec's table",
        || match seen.bad_error_bodies.first() {
            None if seen.error_bodies_seen == 0 => Ok(Some("no JSON error body was seen".into())),
            None => Ok(Some(format!(
                "{} error bodies checked",
                seen.error_bodies_seen
            ))),
            Some(first) => Err(format!(
                "{} of {} error bodies break the format; first: {first}",
                seen.bad_error_bodies.len(),
                seen.error_bodies_seen
            )),
        },
    );
    r.check(
        WF,
        "no request was answered with a 5xx status",
        || match seen.server_errors.first() {
            None => Ok(()),
            Some(first) => Err(format!(
                "{} responses were 5xx; first: {first}",
                seen.server_errors.len()
            )),
        },
    );
    // HTTP/1.1 framing (RFC 9112 section 6): a body shorter than its Content-Length leaves the
    // client with a broken connection and no usable answer.
    r.check(
        WF,
        "every response body matched its framing (Content-Length)",
        || match seen.broken_bodies.first() {
            None => Ok(()),
            Some(first) => Err(format!(
                "{} responses could not be read; first: {first}",
                seen.broken_bodies.len()
            )),
        },
    );
}

#[cfg(test)]
mod tests {
    use super::{codes_in, validate_body};

    #[test]
    fn error_bodies() {
        let ok = br#"{"errors":[{"code":"BLOB_UNKNOWN","message":"x","detail":{}}]}"#;
        assert_eq!(validate_body(ok), Some(Ok(())));
        assert_eq!(codes_in(ok), vec!["BLOB_UNKNOWN".to_string()]);
        assert!(validate_body(b"404 page not found").is_none());
        assert!(matches!(validate_body(br#"{"errors":[]}"#), Some(Err(_))));
        assert!(matches!(validate_body(br#"{"error":"x"}"#), Some(Err(_))));
        let odd = br#"{"errors":[{"code":"RANGE_INVALID"}]}"#;
        assert!(matches!(validate_body(odd), Some(Err(_))));
        let bad_msg = br#"{"errors":[{"code":"DENIED","message":5}]}"#;
        assert!(matches!(validate_body(bad_msg), Some(Err(_))));
    }
}
