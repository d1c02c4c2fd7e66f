//! The benchmark's floor: the same bytes an upload sends, sent as plain
//! HTTP/1.1 PUTs of each part over `--tasks` parallel keep-alive
//! connections by the simplest loop there is (blocking threads, no signing,
//! no SDK). What this reaches is the practical limit of the machine and the
//! server for that part size and concurrency. With an `https://` endpoint
//! the same loop goes through TLS (rustls, verifying against `--ca`): the
//! floor of the HTTPS path.
//!
//! `obs-floor --endpoint http(s)://127.0.0.1:PORT [--ca ca.pem] --bucket B --key K --file F --part-size N --tasks T`
//! prints `{"bytes":..,"seconds":..}`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};

struct Args {
    addr: String,
    /// Set for an `https://` endpoint.
    tls: Option<Arc<rustls::ClientConfig>>,
    bucket: String,
    key: String,
    file: String,
    part_size: u64,
    tasks: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let (mut endpoint, mut bucket, mut key, mut file, mut part_size, mut tasks) = (None, None, None, None, None, None);
    let mut ca = None;
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--endpoint" => endpoint = Some(value),
            "--ca" => ca = Some(value),
            "--bucket" => bucket = Some(value),
            "--key" => key = Some(value),
            "--file" => file = Some(value),
            "--part-size" => part_size = Some(value.parse().map_err(|_| "bad --part-size")?),
            "--tasks" => tasks = Some(value.parse().map_err(|_| "bad --tasks")?),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    let endpoint: String = endpoint.ok_or("--endpoint is required")?;
    let tls = match (endpoint.starts_with("https://"), ca) {
        (true, Some(ca)) => Some(client_config(&ca)?),
        (true, None) => return Err("an https endpoint needs --ca".into()),
        (false, Some(_)) => return Err("--ca is for an https endpoint".into()),
        (false, None) => None,
    };
    Ok(Args {
        addr: endpoint.trim_start_matches("http://").trim_start_matches("https://").trim_end_matches('/').to_string(),
        tls,
        bucket: bucket.ok_or("--bucket is required")?,
        key: key.ok_or("--key is required")?,
        file: file.ok_or("--file is required")?,
        part_size: part_size.ok_or("--part-size is required")?,
        tasks: tasks.unwrap_or(1).max(1),
    })
}

/// A TLS client setup that trusts the certificates in `ca` (PEM).
fn client_config(ca: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read {ca}: {e}"))?;
    for cert in certs {
        roots.add(cert).map_err(|e| format!("{ca}: {e}"))?;
    }
    // obs-native's order: AES-128-GCM first, so that the floor pays for the
    // cipher obs-native negotiates (keep in step with `crypto_provider` in
    // core/src/http.rs; the test kit does not depend on the core).
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites.sort_by_key(|s| {
        use rustls::CipherSuite::{TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS13_AES_128_GCM_SHA256};
        !matches!(s.suite(), TLS13_AES_128_GCM_SHA256 | TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 | TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)
    });
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// One keep-alive connection to the endpoint, through TLS for https.
fn connect(args: &Args) -> std::io::Result<Box<dyn ReadWrite>> {
    let stream = TcpStream::connect(&args.addr)?;
    stream.set_nodelay(true)?;
    let Some(config) = &args.tls else { return Ok(Box::new(stream)) };
    let host = args.addr.rsplit_once(':').map_or(args.addr.as_str(), |(h, _)| h).trim_matches(['[', ']']);
    let name = ServerName::try_from(host.to_string()).map_err(std::io::Error::other)?;
    let tls = rustls::ClientConnection::new(config.clone(), name).map_err(std::io::Error::other)?;
    Ok(Box::new(rustls::StreamOwned::new(tls, stream)))
}

trait ReadWrite: Read + Write + Send {}
impl<T: Read + Write + Send> ReadWrite for T {}

/// Sends one PUT with the file range as body and reads the whole answer.
fn put(conn: &mut BufReader<Box<dyn ReadWrite>>, args: &Args, file: &std::fs::File, n: u64, offset: u64, len: u64, buf: &mut [u8]) -> std::io::Result<()> {
    let head = format!(
        "PUT /{}/{}?partNumber={n}&uploadId=floor HTTP/1.1\r\nHost: {}\r\nContent-Length: {len}\r\n\r\n",
        args.bucket, args.key, args.addr
    );
    let stream = conn.get_mut();
    stream.write_all(head.as_bytes())?;
    let mut pos = offset;
    while pos < offset + len {
        let want = ((offset + len - pos) as usize).min(buf.len());
        let got = file.read_at(&mut buf[..want], pos)?;
        if got == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "file shorter than expected"));
        }
        stream.write_all(&buf[..got])?;
        pos += got as u64;
    }
    stream.flush()?;
    let mut line = String::new();
    conn.read_line(&mut line)?;
    if !line.contains(" 200 ") {
        return Err(std::io::Error::other(format!("answer: {}", line.trim())));
    }
    let mut body_len = 0usize;
    loop {
        line.clear();
        conn.read_line(&mut line)?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            body_len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; body_len];
    conn.read_exact(&mut body)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("obs-floor: {e}");
            std::process::exit(2);
        }
    };
    let file = Arc::new(std::fs::File::open(&args.file).unwrap_or_else(|e| {
        eprintln!("obs-floor: {}: {e}", args.file);
        std::process::exit(2);
    }));
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let parts = size.div_ceil(args.part_size).max(1);
    let next = Arc::new(AtomicU64::new(1));
    let started = Instant::now();
    let workers: Vec<_> = (0..args.tasks)
        .map(|_| {
            let (args, file, next) = (args.clone(), file.clone(), next.clone());
            std::thread::spawn(move || -> std::io::Result<()> {
                let mut conn = BufReader::new(connect(&args)?);
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n > parts {
                        return Ok(());
                    }
                    let offset = (n - 1) * args.part_size;
                    let len = args.part_size.min(size - offset);
                    put(&mut conn, &args, &file, n, offset, len, &mut buf)?;
                }
            })
        })
        .collect();
    for w in workers {
        if let Err(e) = w.join().unwrap_or_else(|_| Err(std::io::Error::other("worker panicked"))) {
            eprintln!("obs-floor: {e}");
            std::process::exit(1);
        }
    }
    println!("{{\"bytes\":{size},\"seconds\":{}}}", started.elapsed().as_secs_f64());
}
