//! The `berth` command: the only part of Berth that reads its settings from the process
//! environment (here and in [`cli`]; object_store's builders in `blobs` read only their own
//! credential variables) and the only part that exits. Each command lives in `cli`; this
//! file sets up logging and turns the outcome into an exit code.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
        // PostgreSQL's notices ("relation ... already exists, skipping" at each migration
        // check) are not worth a line at every start.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx::postgres::notice=warn"));
    // Lines are written by a thread of their own, so a request never waits on stderr (the
    // access log writes a line per request); none is dropped when the writer falls behind.
    let (writer, flush_logs) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stderr());
    let log = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match cli.log_format() {
        // One object per line, for log collectors: no colours, the span's fields included.
        berth::config::LogFormat::Json => log.json().with_current_span(false).init(),
        berth::config::LogFormat::Text => log
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    let outcome = cli::run(cli);
    // Every log line is out before the last word.
    drop(flush_logs);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth: {e:#}");
            ExitCode::FAILURE
        }
    }
}
