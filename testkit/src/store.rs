//! The real object store of modes s3 and obs: one s3s-fs `FileSystem` over
//! `--root`, behind s3s's own signature checks (AWS V2 and V4, with the keys of the
//! shared [`KeyRing`]) and, with `--domain`, virtual-hosted-style addressing. Also
//! answers which multipart uploads s3s-fs still holds, from the `.upload-<id>.json`
//! files it keeps in the root.
//!
//! Requests the OBS front verified come through the same service, without an
//! `Authorization` and marked [`crate::keys::FrontVerified`]: there is one
//! `FileSystem` per root, because s3s-fs names its temporary files from a counter
//! of its own, and two instances over one root would write the same temporary file.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper::{Request, Response};
use s3s::host::{S3Host, VirtualHost};
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s_fs::FileSystem;

use crate::backend::BoxError;
use crate::keys::{KeyRing, RingAuth, StoreAccess};
use crate::stats::CountedBody;

pub struct Store {
    root: PathBuf,
    service: S3Service,
}

impl Store {
    /// `account`: the access key the server started with; verified requests reach
    /// s3s-fs as this account (see [`StoreAccess`]).
    pub fn open(
        root: &Path,
        buckets: &[String],
        ring: Arc<KeyRing>,
        account: Option<String>,
        domains: &[String],
    ) -> Result<Self, String> {
        std::fs::create_dir_all(root)
            .map_err(|err| format!("cannot create root {}: {err}", root.display()))?;
        // s3s-fs stores a bucket as a folder directly under its root.
        for bucket in buckets {
            // s3s refuses every request to a bucket with an invalid name; say so now.
            if !s3s::path::check_bucket_name(bucket) {
                return Err(format!(
                    "invalid bucket name {bucket:?} (S3 rules: 3-63 of a-z 0-9 . -)"
                ));
            }
            let dir = root.join(bucket);
            std::fs::create_dir_all(&dir)
                .map_err(|err| format!("cannot create bucket folder {}: {err}", dir.display()))?;
        }
        let fs = FileSystem::new(root)
            .map_err(|err| format!("cannot open the store at {}: {err:?}", root.display()))?;
        // FileSystem canonicalises the root; list uploads from the same folder it writes to.
        let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());

        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(RingAuth(ring.clone()));
        builder.set_access(StoreAccess::new(ring, account));
        if !domains.is_empty() {
            builder.set_host(BucketDomains::new(domains)?);
        }
        Ok(Self {
            root,
            service: builder.build(),
        })
    }

    pub async fn serve(
        &self,
        request: Request<CountedBody>,
    ) -> Result<Response<s3s::Body>, BoxError> {
        let request = request.map(s3s::Body::http_body);
        self.service.call(request).await.map_err(BoxError::from)
    }

    /// The folder s3s-fs stores into (canonical).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether `bucket` exists: s3s-fs keeps a bucket as a folder directly under its root.
    pub fn bucket_exists(&self, bucket: &str) -> bool {
        s3s::path::check_bucket_name(bucket) && self.root.join(bucket).is_dir()
    }

    /// Upload ids of the multipart uploads neither completed nor aborted.
    pub fn uploads(&self) -> Result<OpenUploads, String> {
        let entries = std::fs::read_dir(&self.root)
            .map_err(|err| format!("cannot list {}: {err}", self.root.display()))?;
        let mut open = OpenUploads::default();
        let mut part_owners = BTreeSet::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(id) = name
                .strip_prefix(".upload-")
                .and_then(|rest| rest.strip_suffix(".json"))
            {
                open.uploads.push(id.to_owned());
            } else if let Some((id, _)) = name
                .strip_prefix(".upload_id-")
                .and_then(|rest| rest.split_once(".part-"))
            {
                part_owners.insert(id.to_owned());
            }
        }
        open.uploads.sort();
        // s3s-fs forgets an upload id at the start of CompleteMultipartUpload, before it
        // checks the parts: a complete that fails (EntityTooSmall, bad part order) leaves
        // part files that no upload id owns any more, and no call can remove them.
        open.orphan_parts = part_owners
            .into_iter()
            .filter(|id| open.uploads.binary_search(id).is_err())
            .collect();
        Ok(open)
    }
}

/// What `GET /uploads` reports.
#[derive(Debug, Default, serde::Serialize)]
pub struct OpenUploads {
    /// Upload ids s3s-fs still knows.
    pub uploads: Vec<String>,
    /// Upload ids with part files left in the root but no upload record.
    pub orphan_parts: Vec<String>,
}

/// Virtual-hosted-style addressing for `--domain`: `bucket.<domain>[:port]` names a
/// bucket; any other host (127.0.0.1:port, localhost, the bare domain) is path style.
///
/// s3s's own `MultiDomain` compares the Host header, port included, with the domain
/// and takes any other host name that looks like a domain (127.0.0.1:1234 does) as a
/// bucket name, which breaks path-style requests to a random port.
#[derive(Debug, Clone)]
pub struct BucketDomains {
    domains: Vec<String>,
}

impl BucketDomains {
    pub fn new(domains: &[String]) -> Result<Self, String> {
        let mut cleaned = Vec::with_capacity(domains.len());
        for domain in domains {
            let domain = domain.trim().trim_matches('.').to_ascii_lowercase();
            if domain.is_empty() || domain.contains(['/', ':']) {
                return Err(format!(
                    "--domain expects a host name like obs.local, not {domain:?}"
                ));
            }
            cleaned.push(domain);
        }
        Ok(Self { domains: cleaned })
    }

    /// The bucket a virtual-hosted Host header names, as written, with the domain it
    /// matched; `None` for path-style hosts.
    pub fn bucket_of<'a>(&'a self, host: &'a str) -> Option<(&'a str, &'a str)> {
        let name = host_without_port(host);
        self.domains.iter().find_map(|domain| {
            strip_suffix_ignore_case(name, domain)
                .and_then(|rest| rest.strip_suffix('.'))
                .filter(|bucket| !bucket.is_empty())
                .map(|bucket| (bucket, domain.as_str()))
        })
    }
}

impl S3Host for BucketDomains {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> s3s::S3Result<VirtualHost<'a>> {
        Ok(match self.bucket_of(host) {
            Some((bucket, domain)) => {
                VirtualHost::new(domain).with_bucket(Cow::Owned(bucket.to_ascii_lowercase()))
            }
            None => VirtualHost::new(host),
        })
    }
}

fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        // [::1]:port
        return host
            .split_once(']')
            .map_or(host, |(inside, _)| inside.trim_start_matches('['));
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

fn strip_suffix_ignore_case<'a>(name: &'a str, suffix: &str) -> Option<&'a str> {
    let split = name.len().checked_sub(suffix.len())?;
    let tail = name.get(split..)?;
    tail.eq_ignore_ascii_case(suffix).then(|| &name[..split])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_domains() {
        let hosts = BucketDomains::new(&["obs.local".to_owned()]).expect("valid");
        let parse = |h: &'static str| {
            let vh = hosts.parse_host_header(h).expect("parsed");
            vh.bucket().map(str::to_owned)
        };
        assert_eq!(
            parse("my-bucket.obs.local:4321"),
            Some("my-bucket".to_owned())
        );
        assert_eq!(parse("My-Bucket.OBS.local"), Some("my-bucket".to_owned()));
        assert_eq!(parse("obs.local:4321"), None);
        assert_eq!(parse("127.0.0.1:4321"), None);
        assert_eq!(parse("xobs.local"), None);
        assert_eq!(
            hosts.bucket_of("My-Bucket.OBS.local:80"),
            Some(("My-Bucket", "obs.local"))
        );
    }
}
