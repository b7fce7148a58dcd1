//! Reporting (one line per check, a closing tally) and the small assertions checks are
//! written with. An assertion returns `Err(reason)`, where the reason says what was expected
//! and what came back, briefly.

use std::io::Write as _;

use crate::client::Resp;

pub type Outcome = Result<(), String>;

#[derive(Default)]
pub struct Report {
    pub passed: usize,
    pub failed: usize,
}

impl Report {
    /// Runs one check and prints `ok - wf: name` or `not ok - wf: name: reason`.
    pub fn check(&mut self, workflow: &str, name: &str, f: impl FnOnce() -> Outcome) {
        let result = f().map(|()| None);
        self.record(workflow, name, result);
    }

    /// Like [`Report::check`], for checks that pass in more than one way the spec allows;
    /// the note (`ok - wf: name # note`) says which way was taken.
    pub fn check_noted(
        &mut self,
        workflow: &str,
        name: &str,
        f: impl FnOnce() -> Result<Option<String>, String>,
    ) {
        let result = f();
        self.record(workflow, name, result);
    }

    fn record(&mut self, workflow: &str, name: &str, result: Result<Option<String>, String>) {
        let line = match &result {
            Ok(None) => {
                self.passed += 1;
                format!("ok - {workflow}: {name}")
            }
            Ok(Some(note)) => {
                self.passed += 1;
                format!("ok - {workflow}: {name} # {}", one_line(note))
            }
            Err(reason) => {
                self.failed += 1;
                format!("not ok - {workflow}: {name}: {}", one_line(reason))
            }
        };
        print_line(&line);
    }

    /// Reports that a workflow could not prepare its content, so its checks did not run.
    pub fn setup_failed(&mut self, workflow: &str, reason: &str) {
        self.record(workflow, "setup", Err(format!("checks skipped: {reason}")));
    }
}

/// Prints one line of output. A closed stdout (`| head`) must not turn into a panic; the exit
/// status still tells the outcome.
pub fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn one_line(s: &str) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() > 300 {
        let cut: String = flat.chars().take(300).collect();
        format!("{cut}...")
    } else {
        flat
    }
}

/// The start of a body, printable, for messages.
pub fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(120)]).to_string();
    format!("{:?}", text.trim())
}

pub fn ensure(cond: bool, reason: impl FnOnce() -> String) -> Outcome {
    if cond { Ok(()) } else { Err(reason()) }
}

/// The status must be one of `want`.
pub fn status(resp: &Resp, want: &[u16]) -> Outcome {
    if want.contains(&resp.status) {
        return Ok(());
    }
    let want: Vec<String> = want.iter().map(u16::to_string).collect();
    Err(format!(
        "{} {}: expected {}, got {}",
        resp.method,
        short_path(&resp.url),
        want.join(" or "),
        resp.summary()
    ))
}

/// The status must be `want_status` and the JSON error body must carry `code`
/// (spec "Error Codes": `{"errors":[{"code":...,"message":...}]}`).
pub fn error(resp: &Resp, want_status: u16, code: &str) -> Outcome {
    status(resp, &[want_status])?;
    error_code(resp, code)
}

/// The body must be a spec error body containing `code`.
pub fn error_code(resp: &Resp, code: &str) -> Outcome {
    if let Some(Err(problem)) = crate::errors::validate_body(&resp.body) {
        return Err(format!(
            "{} {}: malformed error body: {problem}",
            resp.method,
            short_path(&resp.url)
        ));
    }
    let codes = resp.error_codes();
    if codes.iter().any(|c| c == code) {
        return Ok(());
    }
    Err(format!(
        "{} {}: expected {} with error code {code}, got {}",
        resp.method,
        short_path(&resp.url),
        resp.status,
        if codes.is_empty() {
            format!("body {}", snippet(&resp.body))
        } else {
            codes.join(",")
        }
    ))
}

/// When the 4xx body is a spec error body, its code must be one of `allowed`; a non-JSON body
/// is allowed ("A `4XX` response code from the registry MAY return a body in any format").
pub fn accept_codes(resp: &Resp, allowed: &[&str]) -> Outcome {
    let codes = resp.error_codes();
    if codes.is_empty() || codes.iter().any(|c| allowed.contains(&c.as_str())) {
        Ok(())
    } else {
        Err(format!(
            "{} {}: expected error code {}, got {}",
            resp.method,
            short_path(&resp.url),
            allowed.join(" or "),
            codes.join(",")
        ))
    }
}

/// A header that must be present; returns its value.
pub fn header<'a>(resp: &'a Resp, name: &str) -> Result<&'a str, String> {
    resp.header(name).ok_or_else(|| {
        format!(
            "{} {}: {} response has no {name} header",
            resp.method,
            short_path(&resp.url),
            resp.status
        )
    })
}

/// A header that must equal `want` exactly.
pub fn header_eq(resp: &Resp, name: &str, want: &str) -> Outcome {
    let got = header(resp, name)?;
    ensure(got == want, || {
        format!(
            "{} {}: expected {name}: {want}, got {got:?}",
            resp.method,
            short_path(&resp.url)
        )
    })
}

/// `Content-Type` without parameters must equal `want` (pull section: "The client SHOULD
/// ignore parameters on the `Content-Type` header").
pub fn content_type(resp: &Resp, want: &str) -> Outcome {
    let got = header(resp, "Content-Type")?;
    let bare = got.split(';').next().unwrap_or("").trim();
    ensure(bare.eq_ignore_ascii_case(want), || {
        format!(
            "{} {}: expected Content-Type {want}, got {got:?}",
            resp.method,
            short_path(&resp.url)
        )
    })
}

/// `Content-Length` must be present and equal `want`.
pub fn content_length(resp: &Resp, want: usize) -> Outcome {
    let got = header(resp, "Content-Length")?;
    ensure(got.trim().parse::<usize>().ok() == Some(want), || {
        format!(
            "{} {}: expected Content-Length {want}, got {got:?}",
            resp.method,
            short_path(&resp.url)
        )
    })
}

/// The body must be exactly `want`.
pub fn body_eq(resp: &Resp, want: &[u8]) -> Outcome {
    resp.body_complete()?;
    ensure(resp.body == want, || {
        format!(
            "{} {}: body differs from what was pushed ({} bytes expected, {} received)",
            resp.method,
            short_path(&resp.url),
            want.len(),
            resp.body.len()
        )
    })
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

#[cfg(test)]
mod tests {
    use super::short_path;

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
}
