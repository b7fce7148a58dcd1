//! Reporting (one line per check, a closing tally) and the small assertions checks are
//! written with. An assertion returns `Err(reason)`, where the reason says what was expected
//! and what came back, briefly.

use std::io::Write as _;

use crate::resp::{Resp, short_path, snippet};

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
    if let Some(Err(problem)) = crate::resp::validate_body(&resp.body) {
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
