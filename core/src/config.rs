//! Client configuration: the `server` string parsed as the reference SDK
//! parses it, and the options that shape every request.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::sign::Signature;

/// Options as the user gave them, already coerced to plain types by the
/// binding (`undefined` = `None`).
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub security_token: Option<String>,
    pub server: Option<String>,
    pub is_secure: Option<bool>,
    pub port: Option<u16>,
    pub path_style: Option<bool>,
    pub signature: Option<String>,
    pub is_signature_negotiation: Option<bool>,
    pub region: Option<String>,
    pub timeout_secs: Option<u64>,
    pub max_retry_count: Option<u32>,
    /// `true`/`false`, or a CA bundle path.
    pub ssl_verify: Option<SslVerify>,
    pub is_cname: Option<bool>,
    pub max_connections: Option<usize>,
    pub user_agent: Option<String>,
    /// An HTTP proxy every request goes through (`http://host:port`).
    pub proxy: Option<String>,
    /// `false` sends part bodies through buffers even where sendfile could
    /// carry them (plain HTTP on Linux); index.js sets it from
    /// `OBS_NATIVE_SENDFILE=0`.
    pub sendfile: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SslVerify {
    Off,
    SystemRoots,
    CaFile(String),
}

/// How requests are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureMode {
    Fixed(Signature),
    /// Ask the bucket (`HEAD /?apiversion`) which protocol it speaks; OBS
    /// when it answers API version 3.0 or later, else V2.
    Negotiate,
}

#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub secure: bool,
    pub path_style: bool,
    pub is_cname: bool,
}

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub endpoint: Endpoint,
    pub signature: SignatureMode,
    pub region: String,
    pub timeout: Duration,
    pub max_retry_count: u32,
    pub ssl_verify: SslVerify,
    pub max_connections: usize,
    pub user_agent: String,
    pub proxy: Option<String>,
    /// Part bodies may go with sendfile (see `http::Client::new`).
    pub sendfile: bool,
}

/// The longest idle timeout honoured (a year).
const MAX_TIMEOUT_SECS: u64 = 365 * 24 * 3600;

pub const DEFAULT_USER_AGENT: &str = concat!("obs-native/", env!("CARGO_PKG_VERSION"));

impl ClientConfig {
    pub fn from_options(o: &ClientOptions) -> Result<Self> {
        let server = o.server.as_deref().map(str::trim).unwrap_or("");
        if server.is_empty() {
            return Err(Error::invalid_argument("Server is not set"));
        }
        let mut secure = o.is_secure.unwrap_or(true);
        let mut rest = server;
        // The scheme in any case (`HTTPS://` is the same scheme).
        let after_scheme = |scheme: &str| rest.get(..scheme.len()).filter(|s| s.eq_ignore_ascii_case(scheme)).map(|_| &rest[scheme.len()..]);
        if let Some(r) = after_scheme("https://") {
            rest = r;
            secure = true;
        } else if let Some(r) = after_scheme("http://") {
            rest = r;
            secure = false;
        }
        // A trailing path is dropped, as the reference SDK drops it.
        if let Some(i) = rest.find('/') {
            rest = &rest[..i];
        }
        // An IPv6 literal keeps its brackets (as it goes in the Host header
        // and the URL); the port, if any, follows the closing bracket.
        let (host, port_text) = if rest.starts_with('[') {
            let close = rest.find(']').ok_or_else(|| bad_ipv6(server))?;
            let after = &rest[close + 1..];
            if !(after.is_empty() || after.starts_with(':')) || rest[1..close].parse::<std::net::Ipv6Addr>().is_err() {
                return Err(bad_ipv6(server));
            }
            (&rest[..=close], after.strip_prefix(':'))
        } else {
            match rest.find(':') {
                Some(i) => (&rest[..i], Some(&rest[i + 1..])),
                None => (rest, None),
            }
        };
        let mut port = o.port;
        if let Some(p) = port_text {
            port = Some(
                leading_int(p)
                    .and_then(|n| u16::try_from(n).ok())
                    .filter(|n| *n > 0)
                    .ok_or_else(|| Error::invalid_argument(format!("Server port is not valid: {p}")))?,
            );
        }
        if host.is_empty() {
            return Err(Error::invalid_argument("Server is not set"));
        }
        let is_ip = is_ipv4(host) || host.starts_with('[');
        let path_style = is_ip || o.path_style.unwrap_or(false);
        let is_cname = o.is_cname.unwrap_or(false);
        let requested = o.signature.as_deref().map(|s| s.trim().to_ascii_lowercase()).unwrap_or_else(|| "obs".into());
        let has_region = o.region.as_deref().is_some_and(|r| !r.trim().is_empty());
        // As the reference SDK decides: with negotiation on (the default;
        // path style and custom domains turn it off), each bucket is asked
        // which protocol it speaks, whatever `signature` says; with it off,
        // 'obs' signs OBS and anything else V2 ('obs' too where there is no
        // bucket in the host). 'v4' with a region is obs-native's own: AWS
        // V4, which needs the region (the reference has no V4 for requests).
        let negotiable = o.is_signature_negotiation.unwrap_or(true) && !path_style && !is_cname;
        let signature = match requested.as_str() {
            "v4" if has_region => SignatureMode::Fixed(Signature::V4),
            "obs" | "v2" | "v4" if negotiable => SignatureMode::Negotiate,
            "obs" if !path_style && !is_cname => SignatureMode::Fixed(Signature::Obs),
            "obs" | "v2" | "v4" => SignatureMode::Fixed(Signature::V2),
            other => {
                return Err(Error::invalid_argument(format!(
                    "signature '{other}' is not supported; use 'obs', 'v2' or 'v4'"
                )));
            }
        };
        Ok(ClientConfig {
            endpoint: Endpoint {
                host: host.to_string(),
                port: port.unwrap_or(if secure { 443 } else { 80 }),
                secure,
                path_style,
                is_cname,
            },
            signature,
            region: o.region.as_deref().map(str::trim).unwrap_or_default().to_string(),
            // Capped at a year: a deadline further out than the clock can
            // hold would overflow.
            timeout: Duration::from_secs(o.timeout_secs.filter(|t| *t > 0).unwrap_or(60).min(MAX_TIMEOUT_SECS)),
            max_retry_count: o.max_retry_count.unwrap_or(3),
            ssl_verify: o.ssl_verify.clone().unwrap_or(SslVerify::Off),
            max_connections: o.max_connections.filter(|n| *n > 0).unwrap_or(1000),
            user_agent: o.user_agent.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| DEFAULT_USER_AGENT.to_string()),
            proxy: o.proxy.clone().filter(|s| !s.is_empty()),
            sendfile: o.sendfile.unwrap_or(true),
        })
    }
}

fn bad_ipv6(server: &str) -> Error {
    Error::invalid_argument(format!("Server is not a valid IPv6 address in brackets: {server}"))
}

/// `parseInt` of the leading digits.
fn leading_int(s: &str) -> Option<u64> {
    let digits: String = s.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

fn is_ipv4(host: &str) -> bool {
    let parts: Vec<&str> = host.split('.').collect();
    parts.len() == 4 && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(server: &str) -> ClientConfig {
        ClientConfig::from_options(&ClientOptions { server: Some(server.into()), ..Default::default() }).unwrap()
    }

    #[test]
    fn scheme_port_and_path_are_parsed_like_the_reference() {
        let c = cfg("http://127.0.0.1:9000/some/path");
        assert_eq!((c.endpoint.host.as_str(), c.endpoint.port, c.endpoint.secure), ("127.0.0.1", 9000, false));
        assert!(c.endpoint.path_style, "an IP address forces path style");
        assert_eq!(c.signature, SignatureMode::Fixed(Signature::V2), "path style signs V2");

        let c = cfg("obs.cn-north-4.myhuaweicloud.com");
        assert_eq!((c.endpoint.port, c.endpoint.secure, c.endpoint.path_style), (443, true, false));
        assert_eq!(c.signature, SignatureMode::Negotiate);

        let c = cfg("  https://example.com:8443  ");
        assert_eq!((c.endpoint.host.as_str(), c.endpoint.port, c.endpoint.secure), ("example.com", 8443, true));

        // The scheme in any case.
        let c = cfg("HTTPS://example.com:8443");
        assert_eq!((c.endpoint.host.as_str(), c.endpoint.port, c.endpoint.secure), ("example.com", 8443, true));
        let c = cfg("Http://example.com");
        assert_eq!((c.endpoint.host.as_str(), c.endpoint.port, c.endpoint.secure), ("example.com", 80, false));
        // Not a scheme: a multi-byte character where one would end.
        assert_eq!(ClientConfig::from_options(&ClientOptions { server: Some("httpé://x".into()), ..Default::default() }).unwrap_err().code, "InvalidArgument");
    }

    #[test]
    fn ipv6_literals_keep_their_brackets_and_force_path_style() {
        let c = cfg("http://[::1]:9000/path");
        assert_eq!((c.endpoint.host.as_str(), c.endpoint.port, c.endpoint.secure), ("[::1]", 9000, false));
        assert!(c.endpoint.path_style, "an IP address forces path style");
        let c = cfg("https://[2001:db8::7]");
        assert_eq!((c.endpoint.host.as_str(), c.endpoint.port), ("[2001:db8::7]", 443));
        for bad in ["http://[::1", "http://[::1]x", "[not-an-address]:80", "[::1]:0", "[::1]:"] {
            let e = ClientConfig::from_options(&ClientOptions { server: Some(bad.into()), ..Default::default() }).unwrap_err();
            assert_eq!(e.code, "InvalidArgument", "{bad}");
        }
    }

    #[test]
    fn an_enormous_timeout_is_capped_to_a_year() {
        let o = ClientOptions { server: Some("h".into()), timeout_secs: Some(u64::MAX), ..Default::default() };
        let c = ClientConfig::from_options(&o).unwrap();
        assert_eq!(c.timeout, Duration::from_secs(MAX_TIMEOUT_SECS));
        assert!(std::time::Instant::now().checked_add(c.timeout).is_some());
    }

    #[test]
    fn options_override_defaults() {
        let o = ClientOptions {
            server: Some("example.com".into()),
            is_secure: Some(false),
            port: Some(8080),
            signature: Some(" OBS ".into()),
            is_signature_negotiation: Some(false),
            ..Default::default()
        };
        let c = ClientConfig::from_options(&o).unwrap();
        assert_eq!((c.endpoint.port, c.endpoint.secure), (8080, false));
        assert_eq!(c.signature, SignatureMode::Fixed(Signature::Obs));
        let o = ClientOptions { server: Some("example.com".into()), path_style: Some(true), ..Default::default() };
        assert_eq!(ClientConfig::from_options(&o).unwrap().signature, SignatureMode::Fixed(Signature::V2));
    }

    #[test]
    fn the_signature_is_chosen_as_the_reference_chooses_it() {
        let cfg = |signature: &str, region: Option<&str>, negotiation: Option<bool>, path_style: bool| {
            let o = ClientOptions {
                server: Some("example.com".into()),
                signature: Some(signature.into()),
                region: region.map(Into::into),
                is_signature_negotiation: negotiation,
                path_style: Some(path_style),
                ..Default::default()
            };
            ClientConfig::from_options(&o).unwrap().signature
        };
        use SignatureMode::{Fixed, Negotiate};
        // Negotiation on: asked per bucket, whatever `signature` says.
        for s in ["obs", "v2", "v4"] {
            assert_eq!(cfg(s, None, None, false), Negotiate, "{s}");
            assert_eq!(cfg(s, Some("  "), Some(true), false), Negotiate, "{s}");
        }
        // Off: 'obs' signs OBS, the others V2.
        assert_eq!(cfg("obs", None, Some(false), false), Fixed(Signature::Obs));
        assert_eq!(cfg("v2", None, Some(false), false), Fixed(Signature::V2));
        assert_eq!(cfg("v4", None, Some(false), false), Fixed(Signature::V2));
        // Path style: no negotiation, and V2 even for 'obs'.
        for s in ["obs", "v2", "v4"] {
            assert_eq!(cfg(s, None, None, true), Fixed(Signature::V2), "{s}");
        }
        // 'v4' with a region: AWS V4, always.
        for (negotiation, path_style) in [(None, false), (Some(false), false), (None, true)] {
            assert_eq!(cfg("v4", Some("cn-north-4"), negotiation, path_style), Fixed(Signature::V4));
        }
        let o = ClientOptions { server: Some("example.com".into()), region: Some(" cn-north-4 ".into()), ..Default::default() };
        assert_eq!(ClientConfig::from_options(&o).unwrap().region, "cn-north-4");
    }

    #[test]
    fn missing_or_bad_server_is_an_invalid_argument() {
        for bad in [None, Some(""), Some("   "), Some("http://")] {
            let e = ClientConfig::from_options(&ClientOptions { server: bad.map(Into::into), ..Default::default() }).unwrap_err();
            assert_eq!(e.code, "InvalidArgument");
            assert_eq!(e.message, "Server is not set");
        }
        let e = ClientConfig::from_options(&ClientOptions { server: Some("h:abc".into()), ..Default::default() }).unwrap_err();
        assert_eq!(e.code, "InvalidArgument");
        let e = ClientConfig::from_options(&ClientOptions {
            server: Some("h".into()),
            signature: Some("v9".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(e.code, "InvalidArgument");
    }
}
