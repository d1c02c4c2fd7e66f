//! The S3 port and its connections: binding 127.0.0.1:<port>, accepting, serving each
//! connection with HTTP/1.1 through the front, and the "server goes away" fault:
//! `stop` closes the listener and every open connection (the port is free when it
//! returns), `start` binds the same port again over the same data.
//!
//! Each connection's socket can also be told to end with a TCP reset instead of a
//! FIN (SO_LINGER 0 on close), which is how the front injects "connection reset".
//!
//! With a certificate and key (`--tls-cert`, `--tls-key`) the port speaks HTTPS
//! instead, so that benchmarks can measure clients on the TLS path.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::front::Front;

pub struct S3Port {
    port: u16,
    front: Arc<Front>,
    tls: Option<TlsAcceptor>,
    serving: Mutex<Option<Serving>>,
}

/// The accept loop while the port is open; it owns the listener and the connections.
struct Serving {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl S3Port {
    /// Binds (port 0 picks a free one) and starts serving.
    pub async fn bind(port: u16, front: Arc<Front>, tls: Option<TlsAcceptor>) -> Result<Self, String> {
        let listener = bind_listener(port).await?;
        let port = listener
            .local_addr()
            .map_err(|err| format!("S3 port address: {err}"))?
            .port();
        let serving = spawn_accept_loop(listener, front.clone(), tls.clone());
        Ok(Self {
            port,
            front,
            tls,
            serving: Mutex::new(Some(serving)),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn is_serving(&self) -> bool {
        self.serving.lock().await.is_some()
    }

    /// Closes the listener and every connection; waits until they are all gone.
    pub async fn stop(&self) {
        let mut serving = self.serving.lock().await;
        if let Some(Serving { stop, task }) = serving.take() {
            let _ = stop.send(());
            let _ = task.await;
        }
    }

    /// Binds the same port again; a no-op while serving.
    pub async fn start(&self) -> Result<(), String> {
        let mut serving = self.serving.lock().await;
        if serving.is_none() {
            let listener = bind_listener(self.port).await?;
            *serving = Some(spawn_accept_loop(listener, self.front.clone(), self.tls.clone()));
        }
        Ok(())
    }
}

async fn bind_listener(port: u16) -> Result<TcpListener, String> {
    // tokio sets SO_REUSEADDR on Unix, so a restart binds again even with the
    // connections that stop closed still in TIME_WAIT.
    TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|err| format!("cannot bind 127.0.0.1:{port}: {err}"))
}

/// The TLS side of the S3 port, from a PEM certificate chain and private key.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|err| format!("cannot read the certificate {}: {err}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|err| format!("cannot read the private key {}: {err}", key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .and_then(|builder| builder.with_no_client_auth().with_single_cert(chain, key))
    .map_err(|err| format!("TLS setup: {err}"))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn spawn_accept_loop(listener: TcpListener, front: Arc<Front>, tls: Option<TlsAcceptor>) -> Serving {
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(accept_loop(listener, front, tls, stopped));
    Serving { stop, task }
}

async fn accept_loop(
    listener: TcpListener,
    front: Arc<Front>,
    tls: Option<TlsAcceptor>,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, front.clone(), tls.clone()));
                }
                Err(err) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    eprintln!("obs-testkit: accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
        }
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    // Aborting a connection task drops its socket: the client sees the server go away.
    connections.shutdown().await;
}

async fn serve_connection(stream: TcpStream, front: Arc<Front>, tls: Option<TlsAcceptor>) {
    let _ = stream.set_nodelay(true);
    let fate = Arc::new(ConnectionFate::new());
    let io = ConnectionIo {
        stream,
        fate: fate.clone(),
    };
    let service = service_fn(move |request| front.clone().handle(request, fate.clone()));
    // An error here is a client gone away, a failed handshake or a fault the front
    // injected on purpose.
    let http = http1::Builder::new();
    match tls {
        None => {
            let _ = http.serve_connection(TokioIo::new(io), service).await;
        }
        Some(tls) => {
            if let Ok(io) = tls.accept(io).await {
                let _ = http.serve_connection(TokioIo::new(io), service).await;
            }
        }
    }
}

/// How a connection ends, decided by the requests on it.
#[derive(Debug)]
pub struct ConnectionFate {
    reset: AtomicBool,
    /// Numbers the connections the server accepted, from 1; the request
    /// log tells which connection each request came on.
    id: u64,
}

/// Connections accepted so far; the last one's number.
static ACCEPTED: AtomicU64 = AtomicU64::new(0);

/// How many connections the server has accepted (`connections` in `GET /stats`).
pub fn accepted() -> u64 {
    ACCEPTED.load(Ordering::Relaxed)
}

impl ConnectionFate {
    fn new() -> Self {
        ConnectionFate { reset: AtomicBool::new(false), id: ACCEPTED.fetch_add(1, Ordering::Relaxed) + 1 }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// Close this connection with a TCP reset (RST) rather than an orderly FIN.
    pub fn reset_on_close(&self) {
        self.reset.store(true, Ordering::Relaxed);
    }
}

/// The socket as hyper sees it; on drop, it turns the close into a reset if asked to.
struct ConnectionIo {
    stream: TcpStream,
    fate: Arc<ConnectionFate>,
}

impl Drop for ConnectionIo {
    fn drop(&mut self) {
        if self.fate.reset.load(Ordering::Relaxed) {
            // SO_LINGER 0: close() discards unsent data and sends RST.
            let _ = self.stream.set_zero_linger();
        }
    }
}

impl AsyncRead for ConnectionIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ConnectionIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.fate.reset.load(Ordering::Relaxed) {
            // No FIN before the reset: the client must see a reset, not an end of stream.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
