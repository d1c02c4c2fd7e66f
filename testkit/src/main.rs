//! obs-testkit: the test server of obs-native. This file owns the process: the
//! command line, startup (store or sink, the S3 port, the control port), the
//! readiness line on stdout, and the process lifetime (stdin EOF, SIGTERM, SIGINT).
//!
//! ```text
//! obs-testkit --root <dir> [--port 0] [--control-port 0] [--access-key AK --secret-key SK]
//!             [--security-token TOKEN] [--bucket NAME]... [--mode s3|obs|sink] [--domain D]...
//! ```
//!
//! Modes: `s3`, s3s-fs as it is (AWS V2/V4); `obs`, the same store behind a front
//! that also speaks Huawei OBS's protocol (negotiation, OBS signatures, `x-obs-*`
//! headers; see `obs.rs`); `sink`, no store, for benchmarks. `--domain D` makes
//! `bucket.D[:port]` a virtual-hosted bucket; the S3 port also takes absolute-form
//! targets, so a client can reach such a host by using the server as its HTTP proxy.
//! `--security-token` makes the keys temporary credentials: signed requests must
//! carry that token.

mod backend;
mod control;
mod faults;
mod front;
mod keys;
mod list_parts;
mod obs;
mod request_ids;
mod request_target;
mod s3_port;
mod s3_xml;
mod sink;
mod stats;
mod store;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::backend::Backend;
use crate::front::Front;
use crate::keys::{KeyRing, Keys};
use crate::obs::ObsProtocol;
use crate::s3_port::S3Port;
use crate::store::BucketDomains;

/// What the server fronts: a real store (speaking S3, or OBS and S3), or a sink
/// that only discards bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    S3,
    Obs,
    Sink,
}

#[derive(Debug)]
struct Options {
    root: Option<PathBuf>,
    port: u16,
    control_port: u16,
    access_key: Option<String>,
    secret_key: Option<String>,
    security_token: Option<String>,
    buckets: Vec<String>,
    mode: Mode,
    domains: Vec<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
}

const USAGE: &str = "usage: obs-testkit --root <dir> [--port 0] [--control-port 0] \
[--access-key AK --secret-key SK] [--security-token TOKEN] [--bucket NAME]... \
[--mode s3|obs|sink] [--domain D]... [--tls-cert cert.pem --tls-key key.pem]";

impl Options {
    fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut options = Options {
            root: None,
            port: 0,
            control_port: 0,
            access_key: None,
            secret_key: None,
            security_token: None,
            buckets: Vec::new(),
            mode: Mode::S3,
            domains: Vec::new(),
            tls_cert: None,
            tls_key: None,
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            // Both `--flag value` and `--flag=value` are accepted.
            let (flag, inline_value) = match arg.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => {
                    (flag.to_owned(), Some(value.to_owned()))
                }
                _ => (arg.clone(), None),
            };
            if flag == "--help" || flag == "-h" {
                return Err(USAGE.to_owned());
            }
            let value = match inline_value {
                Some(value) => value,
                None => args
                    .next()
                    .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?,
            };
            match flag.as_str() {
                "--root" => options.root = Some(PathBuf::from(value)),
                "--port" => options.port = parse_port(&flag, &value)?,
                "--control-port" => options.control_port = parse_port(&flag, &value)?,
                "--access-key" => options.access_key = Some(value),
                "--secret-key" => options.secret_key = Some(value),
                "--security-token" => options.security_token = Some(value),
                "--bucket" => options.buckets.push(value),
                "--domain" => options.domains.push(value),
                "--tls-cert" => options.tls_cert = Some(PathBuf::from(value)),
                "--tls-key" => options.tls_key = Some(PathBuf::from(value)),
                "--mode" => {
                    options.mode = match value.as_str() {
                        "s3" => Mode::S3,
                        "obs" => Mode::Obs,
                        "sink" => Mode::Sink,
                        other => {
                            return Err(format!("--mode must be s3, obs or sink, not {other:?}"));
                        }
                    }
                }
                other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
            }
        }
        if options.access_key.is_some() != options.secret_key.is_some() {
            return Err("--access-key and --secret-key go together".to_owned());
        }
        if options.tls_cert.is_some() != options.tls_key.is_some() {
            return Err("--tls-cert and --tls-key go together".to_owned());
        }
        if options.security_token.is_some() && options.access_key.is_none() {
            return Err("--security-token goes with --access-key and --secret-key".to_owned());
        }
        if options.security_token.as_deref() == Some("") {
            return Err("--security-token must not be empty".to_owned());
        }
        if options.mode != Mode::Sink && options.root.is_none() {
            return Err(format!("--root is required in s3 and obs modes\n{USAGE}"));
        }
        for bucket in &options.buckets {
            // A bucket is a folder directly under the root: refuse anything that could escape it.
            if bucket.is_empty() || bucket.contains(['/', '\\']) || bucket == "." || bucket == ".."
            {
                return Err(format!("invalid bucket name {bucket:?}"));
            }
        }
        Ok(options)
    }
}

fn parse_port(flag: &str, value: &str) -> Result<u16, String> {
    value
        .parse()
        .map_err(|_| format!("{flag} must be a port number, not {value:?}"))
}

fn main() {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("obs-testkit: {message}");
            std::process::exit(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("obs-testkit: cannot start the tokio runtime: {err}");
            std::process::exit(1);
        }
    };
    if let Err(message) = runtime.block_on(run(options)) {
        eprintln!("obs-testkit: {message}");
        std::process::exit(1);
    }
    // Exit at once rather than dropping the runtime: a drop would wait for blocking
    // file tasks of requests that no client is waiting for any more.
    std::process::exit(0);
}

async fn run(options: Options) -> Result<(), String> {
    let keys = options
        .access_key
        .clone()
        .zip(options.secret_key.clone())
        .map(|(access_key, secret_key)| Keys {
            access_key,
            secret_key,
            security_token: options.security_token.clone(),
        });
    let ring = Arc::new(KeyRing::new(keys));
    let backend = match options.mode {
        Mode::S3 | Mode::Obs => {
            let root = options
                .root
                .clone()
                .ok_or("--root is required in s3 and obs modes")?;
            let store = store::Store::open(
                &root,
                &options.buckets,
                ring.clone(),
                options.access_key.clone(),
                &options.domains,
            )?;
            Backend::Store(store)
        }
        Mode::Sink => Backend::Sink(sink::Sink::new(&options.domains)),
    };
    let obs = match options.mode {
        Mode::Obs => Some(ObsProtocol::new(BucketDomains::new(&options.domains)?)),
        Mode::S3 | Mode::Sink => None,
    };
    let front = Arc::new(Front::new(backend, ring, obs));

    let tls = match (&options.tls_cert, &options.tls_key) {
        (Some(cert), Some(key)) => Some(s3_port::tls_acceptor(cert, key)?),
        _ => None,
    };
    let s3_port = S3Port::bind(options.port, front.clone(), tls).await?;
    let control_listener = TcpListener::bind(("127.0.0.1", options.control_port))
        .await
        .map_err(|err| {
            format!(
                "cannot bind the control port {}: {err}",
                options.control_port
            )
        })?;
    let control_port = control_listener
        .local_addr()
        .map_err(|err| format!("control port address: {err}"))?
        .port();
    let control = Arc::new(control::Control::new(front, s3_port));
    let port = control.s3_port().port();
    tokio::spawn(control::serve(control_listener, control));

    // The readiness line is the only thing ever written to stdout.
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{{\"port\":{port},\"control\":{control_port}}}")
            .and_then(|()| stdout.flush())
            .map_err(|err| format!("cannot write the readiness line: {err}"))?;
    }

    // The server must never outlive the process that spawned it: that process holds our
    // stdin, and when it dies (or closes the pipe on purpose) we read EOF.
    std::thread::spawn(|| {
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 256];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => std::process::exit(0),
                Ok(_) => {}
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => std::process::exit(0),
            }
        }
    });

    wait_for_termination().await;
    Ok(())
}

async fn wait_for_termination() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut sigterm) => {
            tokio::select! {
                _ = sigterm.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(err) => {
            eprintln!("obs-testkit: cannot listen for SIGTERM ({err}); stopping on SIGINT only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse(args: &[&str]) -> Result<Options, String> {
        Options::parse(args.iter().map(|a| a.to_string()))
    }

    #[test]
    fn tls_needs_both_the_certificate_and_the_key() {
        let err = parse(&["--mode", "sink", "--tls-cert", "cert.pem"]).map(|_| ()).expect_err("refused");
        assert!(err.contains("--tls-cert and --tls-key go together"), "{err}");
        let err = parse(&["--mode", "sink", "--tls-key", "key.pem"]).map(|_| ()).expect_err("refused");
        assert!(err.contains("go together"), "{err}");
        let options = parse(&["--mode", "sink", "--tls-cert=c.pem", "--tls-key", "k.pem"]).expect("accepted");
        assert_eq!(options.tls_cert, Some(PathBuf::from("c.pem")));
        assert_eq!(options.tls_key, Some(PathBuf::from("k.pem")));
    }

    #[test]
    fn an_unreadable_certificate_is_a_clear_startup_error() {
        let err = s3_port::tls_acceptor(Path::new("/nonexistent/cert.pem"), Path::new("/nonexistent/key.pem"))
            .map(|_| ())
            .expect_err("refused");
        assert!(err.starts_with("cannot read the certificate /nonexistent/cert.pem"), "{err}");
    }
}
