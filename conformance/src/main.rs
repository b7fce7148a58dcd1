//! `berth-conformance`: checks a registry against the OCI Distribution Specification v1.1.1,
//! grouped by the spec's four workflow categories (pull, push, content discovery, content
//! management), plus the base endpoint (end-1) and the error format.
//!
//! Output is one line per check (`ok - <workflow>: <name>` or
//! `not ok - <workflow>: <name>: <reason>`) and a closing `N passed, N failed`; the exit
//! status is 1 when any check failed. Everything the run creates lives in repositories under
//! `<namespace>/<random id>/`.

mod check;
mod client;
mod discovery;
mod errors;
mod fixtures;
mod management;
mod pull;
mod push;
mod resp;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use check::Report;
use client::Client;

#[derive(Parser)]
#[command(
    name = "berth-conformance",
    version,
    about = "OCI Distribution v1.1.1 conformance checks against a running registry"
)]
struct Args {
    /// Base URL of the registry under test.
    #[arg(long, default_value = "http://127.0.0.1:5000")]
    registry: String,

    /// Run only these workflows (comma separated). The base and error-format checks always run.
    #[arg(long, value_delimiter = ',', value_enum)]
    only: Vec<Workflow>,

    /// Repository prefix; this run's repositories go under `<namespace>/<random id>/`.
    #[arg(long, default_value = "conformance", value_parser = parse_namespace)]
    namespace: String,

    /// Timeout in seconds for each HTTP request.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Workflow {
    Pull,
    Push,
    Discovery,
    Management,
}

/// What each workflow gets: the client and this run's repository prefix.
pub struct Ctx<'a> {
    pub client: &'a Client,
    pub prefix: String,
}

impl Ctx<'_> {
    /// A repository of this run: `<prefix>/<suffix>`.
    pub fn repo(&self, suffix: &str) -> String {
        format!("{}/{}", self.prefix, suffix)
    }
}

/// The repository name grammar from the pull section ("`<name>` MUST match ...").
fn valid_name(name: &str) -> bool {
    fn component(c: &str) -> bool {
        // [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
        let b = c.as_bytes();
        let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
        if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
            return false;
        }
        let mut i = 0;
        while i < b.len() {
            if alnum(b[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < b.len() && !alnum(b[i]) {
                i += 1;
            }
            let sep = &c[start..i];
            let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
            if !ok {
                return false;
            }
        }
        true
    }
    name.split('/').all(component)
}

fn parse_namespace(s: &str) -> Result<String, String> {
    let s = s.trim_matches('/');
    if valid_name(s) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not a valid repository name prefix (lowercase [a-z0-9] components joined by '/', with '.', '_', '__' or dashes inside)"
        ))
    }
}

/// end-1: "If the response is `200 OK`, then the registry implements this specification."
fn base(client: &Client, r: &mut Report) {
    let resp = client.send(client.get(&client.url("/v2/")));
    r.check("base", "GET /v2/ returns 200", || {
        check::status(resp.as_ref().map_err(Clone::clone)?, &[200])
    });
    // Legacy Docker header ("Legacy Docker support HTTP headers"): OPTIONAL in the spec, sent
    // by every Docker-compatible registry and checked by some clients.
    r.check(
        "base",
        "GET /v2/ sends Docker-Distribution-API-Version: registry/2.0",
        || {
            check::header_eq(
                resp.as_ref().map_err(Clone::clone)?,
                "Docker-Distribution-API-Version",
                "registry/2.0",
            )
        },
    );
}

fn main() -> ExitCode {
    let args = Args::parse();
    let client = match Client::new(&args.registry, Duration::from_secs(args.timeout.max(1))) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berth-conformance: {e}");
            return ExitCode::from(2);
        }
    };
    let ctx = Ctx {
        client: &client,
        prefix: format!("{}/{}", args.namespace, fixtures::short_id()),
    };
    let wants = |w: Workflow| args.only.is_empty() || args.only.contains(&w);

    check::print_line(&format!(
        "# registry {} ; repositories under {}/",
        args.registry, ctx.prefix
    ));
    let mut report = Report::default();
    base(&client, &mut report);
    if wants(Workflow::Pull) {
        pull::run(&ctx, &mut report);
    }
    if wants(Workflow::Push) {
        push::run(&ctx, &mut report);
    }
    if wants(Workflow::Discovery) {
        discovery::run(&ctx, &mut report);
    }
    if wants(Workflow::Management) {
        management::run(&ctx, &mut report);
    }
    errors::run(&client, &mut report);

    check::print_line(&format!(
        "{} passed, {} failed",
        report.passed, report.failed
    ));
    if report.failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::valid_name;

    #[test]
    fn name_grammar() {
        for ok in ["a", "conformance/abc123", "a.b/c_d/e__f/g---h", "0"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "", "A", "a..b", "a/", "/a", "a_-b", "-a", "a-", "a//b", "a___b",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
