//! One complete response and how to read it: headers, a printable body and path for messages,
//! and the spec's error format ("API" > "Error Codes"). Below both the client and the checks.

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::Value;

/// One complete response.
pub struct Resp {
    pub method: Method,
    pub url: String,
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// Set when the body could not be read completely (e.g. shorter than its Content-Length);
    /// `body` then holds nothing, and checks that look at the body fail with this reason.
    pub body_error: Option<String>,
}

impl Resp {
    /// The value of a header as text (the first one when repeated).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// All values of a header, joined by ", " as RFC 9110 allows.
    pub fn header_all(&self, name: &str) -> Option<String> {
        let vals: Vec<&str> = self
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!vals.is_empty()).then(|| vals.join(", "))
    }

    pub fn json(&self) -> Result<serde_json::Value, String> {
        self.body_complete()?;
        serde_json::from_slice(&self.body)
            .map_err(|e| format!("body is not JSON ({e}): {}", snippet(&self.body)))
    }

    /// Fails when the body could not be read in full.
    pub fn body_complete(&self) -> Result<(), String> {
        match &self.body_error {
            None => Ok(()),
            Some(e) => Err(format!(
                "{} {}: {} response body unreadable: {e}",
                self.method,
                short_path(&self.url),
                self.status
            )),
        }
    }

    /// The error codes in a spec-shaped JSON error body (empty when there is none).
    pub fn error_codes(&self) -> Vec<String> {
        codes_in(&self.body)
    }

    /// "404 BLOB_UNKNOWN" or just "404": a short description for failure reasons.
    pub fn summary(&self) -> String {
        let codes = self.error_codes();
        if codes.is_empty() {
            self.status.to_string()
        } else {
            format!("{} {}", self.status, codes.join(","))
        }
    }
}

/// The start of a body, printable, for messages.
pub fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(120)]).to_string();
    format!("{:?}", text.trim())
}

/// Path and (shortened) query of a URL, for messages. Digests are cut to 12 hex digits and
/// long opaque upload state in the query is cut, so that the reason stays readable.
pub fn short_path(url: &str) -> String {
    let from_v2 = match url.find("/v2/") {
        Some(i) => &url[i..],
        None => url,
    };
    let shown = match from_v2.split_once('?') {
        Some((path, query)) if query.chars().count() > 60 => {
            let cut: String = query.chars().take(60).collect();
            format!("{path}?{cut}...")
        }
        _ => from_v2.to_string(),
    };
    abbreviate_digests(&shown)
}

/// `sha256:<64 hex>` → `sha256:<12 hex>…` (and likewise for sha512).
fn abbreviate_digests(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = ["sha256:", "sha512:"]
        .iter()
        .filter_map(|alg| rest.find(alg))
        .min()
    {
        let (head, tail) = rest.split_at(i + 7);
        out.push_str(head);
        let hex = tail.bytes().take_while(u8::is_ascii_hexdigit).count();
        if hex > 16 {
            out.push_str(&tail[..12]);
            out.push_str("...");
        } else {
            out.push_str(&tail[..hex]);
        }
        rest = &tail[hex..];
    }
    out.push_str(rest);
    out
}

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

#[cfg(test)]
mod tests {
    use super::{codes_in, short_path, validate_body};

    #[test]
    fn short_path_cuts_digests_and_state() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            short_path(&format!("http://h:1/v2/r/blobs/{d}")),
            "/v2/r/blobs/sha256:aaaaaaaaaaaa..."
        );
        let long = format!("http://h/v2/r/blobs/uploads/u?_state={}", "x".repeat(100));
        assert!(short_path(&long).ends_with("..."));
        assert_eq!(short_path("/v2/r/manifests/v1"), "/v2/r/manifests/v1");
    }

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
