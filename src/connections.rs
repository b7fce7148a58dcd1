//! How client connections are taken: TCP_NODELAY, at most `limits.max_connections` at once,
//! `limits.header_read_timeout_secs` to send a request's headers (so a client that trickles
//! them, or a keep-alive connection left idle, cannot hold a connection forever), TLS when
//! configured, and a graceful stop. [`crate::serve`] hands its router here. Upload bodies
//! that go silent (`limits.body_idle_timeout_secs`) or trickle
//! (`limits.min_body_rate_bytes_per_sec`) are ended by [`slow_body_limited`].

use std::{
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context as TaskContext, Poll},
    time::Duration,
};

use anyhow::Context;
use axum::{Router, extract::connect_info::IntoMakeServiceWithConnectInfo};
use axum_server::accept::{Accept, NoDelayAcceptor};
use hyper_util::rt::TokioTimer;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
};

use crate::config::Config;

/// How long a graceful stop waits for requests in flight before it closes their connections.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` (HTTP, or HTTPS with `config.tls_cert`) until `shutdown`
/// completes, then lets requests in flight finish for up to ten seconds.
pub async fn serve(
    listener: TcpListener,
    app: IntoMakeServiceWithConnectInfo<Router, SocketAddr>,
    config: &Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(Some(DRAIN));
    });
    let limited = Limited {
        permits: Arc::new(Semaphore::new(config.limits.max_connections)),
    };
    let header_timeout = Duration::from_secs(config.limits.header_read_timeout_secs);
    let listener = listener.into_std()?;
    match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            let tls = axum_server::tls_rustls::RustlsAcceptor::new(tls_config(cert, key)?)
                .acceptor(limited);
            let mut server = axum_server::from_tcp(listener).acceptor(tls);
            with_timeouts(server.http_builder(), header_timeout);
            server.handle(handle).serve(app).await?;
        }
        _ => {
            let mut server = axum_server::from_tcp(listener).acceptor(limited);
            with_timeouts(server.http_builder(), header_timeout);
            server.handle(handle).serve(app).await?;
        }
    }
    Ok(())
}

/// The data of a request `body` that fails once the client has sent nothing for `idle`, or
/// less than `min_rate` bytes a second over a window of `idle` (0: no minimum), so that a
/// stalled or trickling upload ends (its handler answers 400 and hyper closes the
/// connection, the body being unread) instead of holding its connection and its session.
pub fn slow_body_limited(
    body: axum::body::Body,
    idle: Duration,
    min_rate: u64,
) -> impl futures::Stream<Item = Result<bytes::Bytes, io::Error>> + Unpin + Send {
    use futures::StreamExt as _;
    let mut window_start = std::time::Instant::now();
    let mut window_bytes: u64 = 0;
    Box::pin(
        tokio_stream::StreamExt::timeout(body.into_data_stream(), idle).map(
            move |chunk| match chunk {
                Ok(Ok(data)) => {
                    window_bytes += data.len() as u64;
                    let elapsed = window_start.elapsed();
                    if elapsed >= idle {
                        let secs = elapsed.as_secs_f64();
                        if (window_bytes as f64) < min_rate as f64 * secs {
                            return Err(io::Error::new(
                                io::ErrorKind::TimedOut,
                                format!(
                                    "the client sent {window_bytes} bytes in {secs:.0} s, \
                                     under the minimum of {min_rate} bytes/s"
                                ),
                            ));
                        }
                        window_start = std::time::Instant::now();
                        window_bytes = 0;
                    }
                    Ok(data)
                }
                Ok(Err(e)) => Err(io::Error::other(e)),
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the client sent nothing for {} s", idle.as_secs()),
                )),
            },
        ),
    )
}

/// hyper enforces its header read timeout only with a timer; HTTP/2 pings idle connections.
/// HTTP/1 reads go into buffers of about [`crate::config::IO_BUFFER`], which also bounds a
/// request's head (431 beyond).
fn with_timeouts(
    builder: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    header_timeout: Duration,
) {
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(crate::config::IO_BUFFER);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(header_timeout)
        .keep_alive_timeout(header_timeout);
}

/// rustls over the PEM chain and key, read once at start.
fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<axum_server::tls_rustls::RustlsConfig> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("tls_cert: reading PEM certificates from {}", cert.display()))?;
    let private = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("tls_key: reading a PEM private key from {}", key.display()))?;
    // The provider is named, not left to rustls' feature detection: several are linked in.
    let mut server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(chain, private)
    .context("tls_cert/tls_key: the key does not match the certificate")?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(axum_server::tls_rustls::RustlsConfig::from_config(
        Arc::new(server),
    ))
}

/// Takes a connection only while fewer than the limit are open (TLS handshakes included);
/// one over it is closed at once, so the clients already served keep their share.
#[derive(Clone)]
struct Limited {
    permits: Arc<Semaphore>,
}

impl<S: Send + 'static> Accept<TcpStream, S> for Limited {
    type Stream = Counted;
    type Service = S;
    type Future = Pin<Box<dyn Future<Output = io::Result<(Counted, S)>> + Send>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let permit = self.permits.clone().try_acquire_owned();
        Box::pin(async move {
            let Ok(permit) = permit else {
                tracing::warn!("connection refused: limits.max_connections are open");
                return Err(io::Error::other("too many connections"));
            };
            let (stream, service) = NoDelayAcceptor.accept(stream, service).await?;
            Ok((
                Counted {
                    stream,
                    _permit: permit,
                },
                service,
            ))
        })
    }
}

/// A connection that holds its place under the limit until it is dropped.
struct Counted {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
