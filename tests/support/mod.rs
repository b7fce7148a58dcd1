//! Helpers shared by the test binaries that drive real `berth serve` processes
//! (`tests/crash.rs`, `tests/replicas.rs`).

use sha2::{Digest as _, Sha256};

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
