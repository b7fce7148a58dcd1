//! The `errors` group, which judges every JSON error body the registry sent during the run
//! against the spec's error format ([`crate::resp::validate_body`]).

use crate::check::Report;
use crate::client::Client;

const WF: &str = "errors";

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
