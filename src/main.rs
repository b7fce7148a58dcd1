//! The `berth` command: the only part of Berth that reads its settings from the process
//! environment (here and in [`cli`]; object_store's builders in `blobs` read only their own
//! credential variables) and the only part that exits. Each command lives in `cli`; this
//! file tunes glibc's allocator, sets up logging and turns the outcome into an exit code.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    tune_glibc_malloc();
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

/// glibc's allocator as a long-running server needs it; called first, before any thread.
///
/// By default glibc gives threads up to eight arenas per core, and raises its threshold for
/// `mmap` to the size of each large block freed, so that later large blocks land in the
/// arenas, whose freed middles it does not give back. Berth's blocking threads (file I/O)
/// grow in number with load, and in a 10-minute soak (`bench/soak.sh`) anonymous memory went
/// from 19 to 70 MiB; with two arenas and a fixed 128 KiB threshold it went to 38, and to 26
/// once statements with lists were no longer cached (README, Performance: memory under a long
/// mixed load). A `GLIBC_TUNABLES` set by the user wins.
#[allow(unsafe_code)]
fn tune_glibc_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("GLIBC_TUNABLES").is_none() {
        // SAFETY: mallopt sets allocator parameters only; no other thread exists yet.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
            libc::mallopt(libc::M_MMAP_THRESHOLD, berth::config::MMAP_THRESHOLD as i32);
        }
    }
}
