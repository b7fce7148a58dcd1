//! Connections a production registry meets: clients that trickle or stall their request
//! head are cut off after `limits.header_read_timeout_secs` without holding up anyone else,
//! and connections beyond `limits.max_connections` are closed at once while those already
//! open are served; a request head that overflows its read buffer is refused; upload bodies
//! that go silent end after `limits.body_idle_timeout_secs`, and those that trickle under
//! `limits.min_body_rate_bytes_per_sec`.

use std::time::Duration;

use reqwest::StatusCode;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::common::{TestServer, random_bytes, sha256, with_digest};

/// How long a test waits for the server to close a connection (its timeout is one second).
const CLOSE_WAIT: Duration = Duration::from_secs(15);

fn address(s: &TestServer) -> String {
    s.base.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection; what it sent before closing.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut seen = Vec::new();
    let closed = tokio::time::timeout(CLOSE_WAIT, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server kept the connection open");
    seen
}

/// One request on an open connection, keep-alive; the status line of the answer.
async fn get_v2(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /v2/ HTTP/1.1\r\nHost: registry\r\n\r\n")
        .await
        .expect("write");
    // `GET /v2/` answers with an empty body: the head is the whole answer.
    let answer = read_head(stream).await;
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Slowloris: twenty clients send half a request head and stall. Others are served
/// meanwhile, and each stalled connection is closed once the header timeout passes; an idle
/// keep-alive connection is closed the same way.
#[tokio::test]
async fn stalled_request_heads_are_cut_off_and_others_served() {
    let s = TestServer::start_with(|c| c.limits.header_read_timeout_secs = 1).await;
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut stream = TcpStream::connect(address(&s)).await.expect("connect");
        stream
            .write_all(b"GET /v2/ HTTP/1.1\r\nHost: registry\r\nX-Trickle: ")
            .await
            .expect("write");
        stalled.push(stream);
    }
    assert_eq!(s.get("/v2/").await.status(), StatusCode::OK);
    let mut idle = TcpStream::connect(address(&s)).await.expect("connect");
    assert_eq!(get_v2(&mut idle).await, "HTTP/1.1 200 OK");
    for stream in &mut stalled {
        let answer = read_until_closed(stream).await;
        // hyper closes without an answer, or with 408 once it has one to give.
        let text = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || text.starts_with("HTTP/1.1 408"),
            "a stalled client got {text}"
        );
    }
    assert!(read_until_closed(&mut idle).await.is_empty());
    assert_eq!(s.get("/v2/").await.status(), StatusCode::OK);
}

/// A request head must fit the read buffer, about `berth::config::IO_BUFFER` (hyper may read
/// past it once, never to twice its size): a head of 64 KiB (a large bearer token) is served,
/// one of two and a half buffers (300 KiB, which the default buffer of hyper took) is refused
/// with 431 (or the connection is closed before the client reads that answer), and the next
/// client is served.
#[tokio::test]
async fn oversized_request_heads_are_refused_and_large_ones_served() {
    let s = TestServer::start().await;
    let head = |filler: usize| {
        format!(
            "GET /v2/ HTTP/1.1\r\nHost: registry\r\nX-Filler: {}\r\n\r\n",
            "a".repeat(filler)
        )
    };
    let mut large = TcpStream::connect(address(&s)).await.expect("connect");
    large
        .write_all(head(64 * 1024).as_bytes())
        .await
        .expect("write");
    let answer = read_head(&mut large).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    let mut oversized = TcpStream::connect(address(&s)).await.expect("connect");
    // The server may stop reading, and close, before the whole head is written.
    oversized
        .write_all(head(5 * berth::config::IO_BUFFER / 2).as_bytes())
        .await
        .ok();
    let answer = read_until_closed(&mut oversized).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || text.starts_with("HTTP/1.1 431"),
        "an oversized head got {text}"
    );
    assert_eq!(s.get("/v2/").await.status(), StatusCode::OK);
}

/// With `max_connections = 4`, four open connections are served; a fifth is closed without
/// an answer; once one of the four goes, a new connection is served again.
#[tokio::test]
async fn connections_over_the_limit_are_closed_and_the_rest_served() {
    let s = TestServer::start_with(|c| c.limits.max_connections = 4).await;
    let mut open = Vec::new();
    for _ in 0..4 {
        let mut stream = TcpStream::connect(address(&s)).await.expect("connect");
        assert_eq!(get_v2(&mut stream).await, "HTTP/1.1 200 OK");
        open.push(stream);
    }
    let mut over = TcpStream::connect(address(&s)).await.expect("connect");
    // The kernel accepted it; the server closes it: the request gets no answer.
    let _ = over
        .write_all(b"GET /v2/ HTTP/1.1\r\nHost: registry\r\n\r\n")
        .await;
    assert!(read_until_closed(&mut over).await.is_empty());
    for stream in &mut open {
        assert_eq!(get_v2(stream).await, "HTTP/1.1 200 OK");
    }
    drop(open.pop());
    // The server learns of the close when it reads the socket: a bounded number of tries.
    let mut served = false;
    for _ in 0..100 {
        let mut stream = TcpStream::connect(address(&s)).await.expect("connect");
        if stream
            .write_all(b"GET /v2/ HTTP/1.1\r\nHost: registry\r\n\r\n")
            .await
            .is_ok()
        {
            let mut buf = [0u8; 64];
            if let Ok(Ok(n)) = tokio::time::timeout(CLOSE_WAIT, stream.read(&mut buf)).await
                && buf[..n].starts_with(b"HTTP/1.1 200")
            {
                served = true;
                break;
            }
        }
        tokio::task::yield_now().await;
    }
    assert!(
        served,
        "no connection was served after one of the four closed"
    );
}

/// Ten pushes whose bodies stall after a few bytes, beside forty idle connections: another
/// client pushes and pulls meanwhile; each stalled upload is answered 400 BLOB_UPLOAD_INVALID
/// once its body has been silent for `body_idle_timeout_secs`, its session keeps no byte of
/// it, and the session completes when the client sends the chunk again.
#[tokio::test]
async fn stalled_upload_bodies_are_cut_off_and_others_served() {
    let s = TestServer::start_with(|c| c.limits.body_idle_timeout_secs = 1).await;
    let data = random_bytes(1000);
    let digest = sha256(&data);
    let mut stalled = Vec::new();
    for _ in 0..10 {
        let location = s.start_upload("slow/push").await;
        let path = location.trim_start_matches(&s.base).to_owned();
        let mut stream = TcpStream::connect(address(&s)).await.expect("connect");
        let head = format!(
            "PATCH {path} HTTP/1.1\r\nHost: registry\r\nContent-Type: application/octet-stream\r\n\
             Content-Range: 0-999\r\nContent-Length: 1000\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.expect("write");
        stream.write_all(&data[..10]).await.expect("write");
        stalled.push((location, stream));
    }
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(TcpStream::connect(address(&s)).await.expect("connect"));
    }

    let other = random_bytes(5000);
    let pushed = s.push_blob("fast/push", &other).await;
    let pulled = s.get(&format!("/v2/fast/push/blobs/{pushed}")).await;
    assert_eq!(pulled.status(), StatusCode::OK);
    assert_eq!(pulled.bytes().await.unwrap().as_ref(), other.as_slice());

    for (location, stream) in &mut stalled {
        let answer = read_until_closed(stream).await;
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.starts_with("HTTP/1.1 400"),
            "a stalled upload got {text}"
        );
        assert!(text.contains("BLOB_UPLOAD_INVALID"), "{text}");
        let status = s.client.get(location.as_str()).send().await.unwrap();
        assert_eq!(status.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            status.headers().get("range").and_then(|v| v.to_str().ok()),
            Some("0-0"),
            "the stalled chunk was not kept"
        );
    }
    let (location, _) = &stalled[0];
    let resp = s
        .client
        .put(with_digest(location, &digest))
        .header("content-range", "0-999")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let blob = s.get(&format!("/v2/slow/push/blobs/{digest}")).await;
    assert_eq!(blob.bytes().await.unwrap().as_ref(), data.as_slice());
}

/// An upload whose body trickles (a byte every 100 ms, never silent for the idle timeout of
/// one second) is ended once a window averages under `min_body_rate_bytes_per_sec`: 400
/// BLOB_UPLOAD_INVALID naming the rate, nothing kept. A body sent steadily above the rate
/// through the same windows completes.
#[tokio::test]
async fn trickling_upload_bodies_are_cut_off_and_steady_ones_kept() {
    let s = TestServer::start_with(|c| {
        c.limits.body_idle_timeout_secs = 1;
        c.limits.min_body_rate_bytes_per_sec = 1000;
    })
    .await;
    let data = random_bytes(30_000);
    // (bytes per write, writes): 1 byte × 30 is 10 B/s; 1,000 bytes × 30 is 10,000 B/s.
    for (step, writes, kept) in [(1usize, 30usize, false), (1000, 30, true)] {
        let location = s.start_upload("slow/trickle").await;
        let path = location.trim_start_matches(&s.base).to_owned();
        let mut stream = TcpStream::connect(address(&s)).await.expect("connect");
        let length = step * writes;
        let head = format!(
            "PATCH {path} HTTP/1.1\r\nHost: registry\r\nContent-Type: application/octet-stream\r\n\
             Content-Range: 0-{}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n",
            length - 1
        );
        stream.write_all(head.as_bytes()).await.expect("write");
        let mut ticks = tokio::time::interval(Duration::from_millis(100));
        for chunk in data[..length].chunks(step) {
            ticks.tick().await;
            // The server may have answered and closed already: the answer tells.
            if stream.write_all(chunk).await.is_err() {
                break;
            }
        }
        let answer = read_until_closed(&mut stream).await;
        let text = String::from_utf8_lossy(&answer);
        let status = s.client.get(location.as_str()).send().await.unwrap();
        if kept {
            assert!(text.starts_with("HTTP/1.1 202"), "a steady body got {text}");
            assert_eq!(
                status.headers().get("range").and_then(|v| v.to_str().ok()),
                Some(format!("0-{}", length - 1).as_str())
            );
        } else {
            assert!(text.starts_with("HTTP/1.1 400"), "a trickle got {text}");
            assert!(text.contains("BLOB_UPLOAD_INVALID"), "{text}");
            assert!(text.contains("under the minimum of 1000 bytes/s"), "{text}");
            assert_eq!(
                status.headers().get("range").and_then(|v| v.to_str().ok()),
                Some("0-0"),
                "the trickled bytes were not kept"
            );
        }
    }
}

/// The threads of process `pid`, as the kernel counts them.
fn threads_of(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("a Threads line")
}

/// Reads from `stream` until the end of a response head; the bytes read so far.
async fn read_head(stream: &mut TcpStream) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(CLOSE_WAIT, stream.read(&mut buf))
            .await
            .expect("an answer in time")
            .expect("read");
        assert!(
            n > 0,
            "closed before answering: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    seen
}

/// Clients that stall in the middle of a transfer hold no thread of the server: 24 pushes
/// whose bodies stop after 64 KiB of 1 MiB and 24 pulls of a 4 MiB blob whose clients stop
/// reading leave the process with at most a few more threads than before (a thread each
/// would add 24 to 72). With the blocking pool limited to 4 threads
/// (`limits.blocking_threads`), another client pushes and pulls meanwhile, and once the
/// stalled pulls read on they get every byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_transfers_hold_no_server_thread() {
    let dir = tempfile::tempdir().unwrap();
    let (data_dir, config) = (dir.path().join("data"), dir.path().join("berth.toml"));
    std::fs::write(
        &config,
        "[durability]\nfsync = false\n\n[limits]\nblocking_threads = 4\n",
    )
    .unwrap();
    let server = crate::support::start_server(&data_dir, &config);
    // A server whose threads were all held would never answer.
    let client = reqwest::Client::builder()
        .timeout(CLOSE_WAIT)
        .build()
        .unwrap();
    let blob = crate::support::random_bytes(7, 4 * 1024 * 1024);
    let digest = crate::support::sha256(&blob);
    let pushed = client
        .post(format!(
            "{}/v2/stall/pull/blobs/uploads/?digest={digest}",
            server.base
        ))
        .header("content-type", "application/octet-stream")
        .body(blob.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), StatusCode::CREATED);
    let addr = server.base.trim_start_matches("http://").to_owned();
    let before = threads_of(server.pid());

    let mut uploads = Vec::new();
    for _ in 0..24 {
        let started = client
            .post(format!("{}/v2/stall/push/blobs/uploads/", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(started.status(), StatusCode::ACCEPTED);
        let location = started.headers()["location"].to_str().unwrap().to_owned();
        let path = location.trim_start_matches(&server.base).to_owned();
        let mut stream = TcpStream::connect(&addr).await.expect("connect");
        let head = format!(
            "PATCH {path} HTTP/1.1\r\nHost: registry\r\nContent-Type: application/octet-stream\r\n\
             Content-Range: 0-1048575\r\nContent-Length: 1048576\r\nExpect: 100-continue\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.expect("write");
        // The server asks for the body once its handler reads it.
        let answer = read_head(&mut stream).await;
        assert!(
            answer.starts_with(b"HTTP/1.1 100"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
        stream.write_all(&blob[..64 * 1024]).await.expect("write");
        uploads.push(stream);
    }
    let mut pulls = Vec::new();
    for _ in 0..24 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        // A small window, so that the server soon has to wait for this client.
        socket.set_recv_buffer_size(4096).unwrap();
        let mut stream = socket
            .connect(addr.parse().unwrap())
            .await
            .expect("connect");
        let request =
            format!("GET /v2/stall/pull/blobs/{digest} HTTP/1.1\r\nHost: registry\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let head = read_head(&mut stream).await;
        assert!(
            head.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        pulls.push((stream, head));
    }
    let during = threads_of(server.pid());
    assert!(
        during <= before + 12,
        "48 stalled transfers took the server from {before} to {during} threads"
    );

    let other = crate::support::random_bytes(8, 300 * 1024);
    let other_digest = crate::support::sha256(&other);
    let pushed = client
        .post(format!(
            "{}/v2/fast/push/blobs/uploads/?digest={other_digest}",
            server.base
        ))
        .body(other.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), StatusCode::CREATED);
    let pulled = client
        .get(format!("{}/v2/fast/push/blobs/{other_digest}", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(pulled.bytes().await.unwrap().as_ref(), other.as_slice());

    drop(uploads);
    for (mut stream, head) in pulls {
        let end = head.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let mut body = head[end..].to_vec();
        let mut buf = vec![0u8; 64 * 1024];
        while body.len() < blob.len() {
            let n = tokio::time::timeout(CLOSE_WAIT, stream.read(&mut buf))
                .await
                .expect("the rest of the blob in time")
                .expect("read");
            assert!(n > 0, "closed after {} bytes", body.len());
            body.extend_from_slice(&buf[..n]);
        }
        assert_eq!(crate::support::sha256(&body), digest);
    }
}
