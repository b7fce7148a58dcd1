//! Helpers shared by the test binaries that drive real `berth serve` processes
//! (`tests/crash.rs`, `tests/gc_crash.rs`, `tests/replicas.rs`, and the API tests that kill
//! one). Each binary uses a part.
#![allow(dead_code)]

use std::{
    collections::VecDeque,
    io::{BufRead, BufReader},
    os::unix::process::ExitStatusExt,
    path::Path,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::Duration,
};

use sha2::{Digest as _, Sha256};

/// How long the server may take to print its serving line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `berth serve`; killed (SIGKILL) and reaped when dropped.
pub struct Server {
    child: Child,
    pub base: String,
    log_tail: Arc<Mutex<VecDeque<String>>>,
}

impl Server {
    /// Starts berth on `data_dir` with the config file `config` and port 0, and waits (bounded) for its serving line.
    pub fn start(data_dir: &Path, config: &Path) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--config")
            .arg(config);
        for var in [
            "BERTH_LISTEN",
            "BERTH_DATA_DIR",
            "BERTH_DATABASE_URL",
            "BERTH_STORAGE_URL",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("BERTH_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawning berth");
        let stderr = child.stderr.take().expect("piped stderr");
        let log_tail = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = mpsc::channel();
        let tail = log_tail.clone();
        // Reads stderr to its end (the server's exit), so the pipe never fills up.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = serving_address(&line)
                    && let Some(tx) = tx.take()
                {
                    tx.send(addr).ok();
                }
                let mut tail = tail.lock().unwrap();
                if tail.len() == 40 {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        });
        let mut server = Server {
            child,
            base: String::new(),
            log_tail,
        };
        match rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(addr) => server.base = format!("http://{addr}"),
            Err(e) => panic!(
                "berth did not report its address ({e}); stderr:\n{}",
                server.log()
            ),
        }
        server
    }

    /// The process id, to read what the kernel says of it under `/proc`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        let tail = self.log_tail.lock().unwrap();
        tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// SIGKILL, then reap; asserts the process died of that signal (it was still running).
    pub fn kill9(mut self) {
        self.child.kill().expect("sending SIGKILL");
        let status = self.child.wait().expect("reaping berth");
        assert_eq!(
            status.signal(),
            Some(9),
            "berth had exited before the kill ({status}); stderr:\n{}",
            self.log()
        );
    }
}

impl Server {
    /// SIGTERM (a graceful stop: the server finishes what it holds), then reaps; asserts it
    /// exited successfully.
    pub fn terminate(mut self) {
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("running kill");
        assert!(sent.success(), "kill -TERM failed");
        let status = self.child.wait().expect("reaping berth");
        assert!(
            status.success(),
            "berth did not stop cleanly ({status}); stderr:\n{}",
            self.log()
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

pub fn start_server(data_dir: &Path, config: &Path) -> Server {
    tokio::task::block_in_place(|| Server::start(data_dir, config))
}

/// `127.0.0.1:PORT` from the server's log line `... berth is serving address=127.0.0.1:PORT`
/// (plain text: the server writes no colours when stderr is not a terminal).
pub fn serving_address(line: &str) -> Option<String> {
    if !line.contains("berth is serving") {
        return None;
    }
    let rest = &line[line.find("address=")? + "address=".len()..];
    let addr: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
    addr.parse::<std::net::SocketAddr>().ok()?;
    Some(addr)
}

/// The OCI digest string of `data`.
pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Deterministic pseudo-random bytes (splitmix64): unique per seed, cheap to make.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

#[test]
fn parses_the_serving_line() {
    let plain = "2026-01-01T00:00:00Z  INFO berth: berth is serving address=127.0.0.1:41234";
    assert_eq!(serving_address(plain).as_deref(), Some("127.0.0.1:41234"));
    assert_eq!(serving_address("listening soon address=1.2.3.4:5"), None);
    assert_eq!(serving_address("berth is serving address=nowhere"), None);
}
