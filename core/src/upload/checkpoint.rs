//! The checkpoint record: the reference SDK's JSON layout and md5 rule (so a
//! record written by either SDK resumes in the other), loading with
//! validation against the file, and atomic replacement on disk.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::descriptors::Patience;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileStat {
    pub file_size: u64,
    /// The file's mtime as JavaScript's `Date.prototype.toUTCString` prints it.
    pub last_modified: String,
    /// Base64 MD5 of the whole file, when EnableCheckSum was set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_sum: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartMeta {
    pub offset: u64,
    pub part_size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default)]
    pub is_completed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    pub bucket_name: String,
    pub object_key: String,
    pub upload_file: String,
    pub part_size: u64,
    pub part_count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "js_string_if_truthy")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "js_string_if_truthy")]
    pub acl: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "js_string_if_truthy")]
    pub website_redirect_location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "js_string_if_truthy")]
    pub sse_kms: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "js_string_if_truthy")]
    pub sse_kms_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "js_string_if_truthy")]
    pub sse_c: Option<String>,
    /// Read from records the reference SDK wrote; never written by us: a
    /// record holds no secret. The key is passed again on every call.
    #[serde(default, skip_serializing, deserialize_with = "js_string_if_truthy")]
    pub sse_c_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<serde_json::Value>,
    #[serde(default)]
    pub md5: String,
    pub upload_file_stat: FileStat,
    #[serde(default)]
    pub parts_meta: BTreeMap<u32, PartMeta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_id: Option<String>,
}

/// JavaScript's `String(v)` for a JSON value.
pub fn js_string(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "null".into(),
        serde_json::Value::Bool(b) => b.to_string(),
        serde_json::Value::Number(n) => js_number(n.as_f64().unwrap_or(f64::NAN)),
        // `join` prints null elements as nothing.
        serde_json::Value::Array(a) => {
            a.iter().map(|e| if e.is_null() { String::new() } else { js_string(e) }).collect::<Vec<_>>().join(",")
        }
        serde_json::Value::Object(_) => "[object Object]".into(),
    }
}

/// Whether JavaScript takes the value as true.
fn js_truthy(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Null => false,
        serde_json::Value::Bool(b) => *b,
        serde_json::Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        serde_json::Value::String(s) => !s.is_empty(),
        _ => true,
    }
}

/// JavaScript's `JSON.stringify` of a parsed JSON value (keys in the order
/// they were read, numbers as JavaScript prints them).
pub fn js_json(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Number(n) => js_number(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::Array(a) => format!("[{}]", a.iter().map(js_json).collect::<Vec<_>>().join(",")),
        serde_json::Value::Object(m) => {
            let fields: Vec<String> =
                m.iter().map(|(k, v)| format!("{}:{}", serde_json::to_string(k).unwrap_or_default(), js_json(v))).collect();
            format!("{{{}}}", fields.join(","))
        }
        other => other.to_string(),
    }
}

/// JavaScript's `Number.prototype.toString()`: the shortest digits that
/// read back as the same number, in fixed notation from 1e-6 up to 1e21,
/// else as `d.ddde+n`.
pub fn js_number(n: f64) -> String {
    if n.is_nan() {
        return "NaN".into();
    }
    if n.is_infinite() {
        return if n > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if n == 0.0 {
        return "0".into();
    }
    let sci = format!("{:e}", n.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let k = digits.len() as i32;
    // The point sits after `point` digits: n = 0.d1d2... x 10^point.
    let point = exp.parse::<i32>().unwrap_or(0) + 1;
    let body = if k <= point && point <= 21 {
        format!("{digits}{}", "0".repeat((point - k) as usize))
    } else if 0 < point && point <= 21 {
        format!("{}.{}", &digits[..point as usize], &digits[point as usize..])
    } else if -6 < point && point <= 0 {
        format!("0.{}{digits}", "0".repeat((-point) as usize))
    } else {
        let e = point - 1;
        let sign = if e < 0 { '-' } else { '+' };
        match digits.len() {
            1 => format!("{digits}e{sign}{}", e.abs()),
            _ => format!("{}.{}e{sign}{}", &digits[..1], &digits[1..], e.abs()),
        }
    };
    if n < 0.0 { format!("-{body}") } else { body }
}

/// A record field the reference SDK copies from the call's parameter as it
/// is (`ContentType: 9`, `ACL: true`), read as JavaScript reads it: a value
/// JavaScript takes as false (`0`, `false`, `''`, `null`) is absent, any
/// other is its `String()`. Such a record then resumes here too, instead of
/// failing to parse (and being removed while its upload stays).
fn js_string_if_truthy<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<String>, D::Error> {
    let v = Option::<serde_json::Value>::deserialize(d)?;
    Ok(v.filter(js_truthy).map(|v| js_string(&v)))
}

fn push_truthy(data: &mut String, v: &Option<String>) {
    if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
        data.push_str(v);
    }
}

impl Checkpoint {
    /// The reference SDK's integrity digest over the record's fields: their
    /// concatenation in a fixed order (missing or empty ones skipped, part
    /// fields as JavaScript's `String()` prints them), MD5, base64.
    /// `include_sse_c_key`: whether the key takes part (it does in records
    /// the reference wrote; our records never hold it).
    pub fn compute_md5(&self, include_sse_c_key: bool) -> String {
        let mut data = String::with_capacity(256 + self.parts_meta.len() * 64);
        data.push_str(&self.bucket_name);
        data.push_str(&self.object_key);
        data.push_str(&self.upload_file);
        data.push_str(&self.part_size.to_string());
        data.push_str(&self.part_count.to_string());
        push_truthy(&mut data, &self.content_type);
        push_truthy(&mut data, &self.acl);
        push_truthy(&mut data, &self.website_redirect_location);
        push_truthy(&mut data, &self.sse_kms);
        push_truthy(&mut data, &self.sse_kms_key);
        push_truthy(&mut data, &self.sse_c);
        if include_sse_c_key {
            push_truthy(&mut data, &self.sse_c_key);
        }
        if let Some(m) = self.metadata.as_ref().filter(|m| js_truthy(m)) {
            data.push_str(&js_json(m));
        }
        push_truthy(&mut data, &self.upload_id);
        for (n, p) in &self.parts_meta {
            data.push_str(&n.to_string());
            data.push_str(&p.offset.to_string());
            data.push_str(&p.part_size.to_string());
            data.push_str(if p.is_completed { "true" } else { "false" });
            data.push_str(p.etag.as_deref().unwrap_or("undefined"));
        }
        base64::engine::general_purpose::STANDARD.encode(crate::md5::digest(data.as_bytes()))
    }

    /// Whether the stored digest matches the fields (written by either SDK).
    pub fn md5_is_valid(&self) -> bool {
        self.md5 == self.compute_md5(true) || (self.sse_c_key.is_none() && self.md5 == self.compute_md5(false))
    }

    /// Sets the digest for writing (the record we write has no SSE-C key).
    pub fn seal(&mut self) {
        self.md5 = self.compute_md5(false);
    }

    /// Bytes of the parts recorded as completed.
    pub fn completed_bytes(&self) -> u64 {
        self.parts_meta.values().filter(|p| p.is_completed).map(|p| p.part_size).sum()
    }
}

/// `Date.prototype.toUTCString` of a file time: `Tue, 24 Nov 2026 21:25:48 GMT`.
pub fn utc_string(t: SystemTime) -> String {
    let t = t.max(SystemTime::UNIX_EPOCH);
    std::panic::catch_unwind(|| httpdate::fmt_http_date(t)).unwrap_or_else(|_| "Invalid Date".to_string())
}

/// What was found at the record's path.
pub enum Loaded {
    Missing,
    Found(Box<Checkpoint>),
}

/// Reads and parses the record. A record that cannot be read or parsed is
/// an error whose code says which (the reference SDK's codes). `patience`:
/// how long to wait for a file descriptor when the process has none left.
pub(crate) async fn load(path: &Path, patience: Patience) -> Result<Loaded> {
    let owned = path.to_path_buf();
    let read = tokio::task::spawn_blocking(move || crate::descriptors::retry_blocking(&patience, || std::fs::read(&owned)))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    let bytes = match read {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded::Missing),
        Err(e) => {
            return Err(Error::new(ErrorKind::Checkpoint, "ReadCheckpointFileError", format!("cannot read the checkpoint file: {e}")));
        }
    };
    match serde_json::from_slice::<Checkpoint>(&bytes) {
        Ok(cp) => Ok(Loaded::Found(Box::new(cp))),
        Err(e) => Err(Error::new(
            ErrorKind::Checkpoint,
            "ParseCheckpointFileError",
            format!("the checkpoint file is not a valid record: {e}"),
        )),
    }
}

/// Whether the file at `path` is a record of the upload `upload_id` (an
/// older one will do: a resume from it finds the parts sent since).
pub(crate) async fn points_to(path: &Path, upload_id: &str) -> bool {
    match tokio::fs::read(path).await {
        Ok(bytes) => serde_json::from_slice::<Checkpoint>(&bytes).is_ok_and(|cp| cp.upload_id.as_deref() == Some(upload_id)),
        Err(_) => false,
    }
}

/// Replaces the record atomically: a temporary file beside it, written in
/// full with mode 0600, then renamed over it. A crash leaves the old record
/// or the new one, never a torn one.
///
/// `locked`: this upload holds the record's lock (see `lock.rs`), so no
/// other writer can be at work beside it and the temporary name is fixed,
/// `.<name>.obs-tmp`: what a killed writer left there is replaced by the next
/// write instead of staying behind. Without the lock every write gets a
/// name of its own.
pub fn save(path: &Path, json: &[u8], locked: bool) -> std::io::Result<()> {
    save_via(path, &temp_path(path, locked), json)
}

fn save_via(path: &Path, tmp: &Path, json: &[u8]) -> std::io::Result<()> {
    let write = || {
        // A new file only: whatever is at the temporary name (a leftover
        // of a killed process, or a link planted in a shared folder) is
        // never written through.
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(tmp)?;
        f.write_all(json)?;
        // On disk before the rename: after a power cut the record is the
        // old one or the new one, never an empty file (XFS, ext4 on a first
        // write). Writes are coalesced, one at a time, off the parts' way.
        sync_unless_unsupported(&f)?;
        drop(f);
        std::fs::rename(tmp, path)
    };
    let mut result = write();
    if matches!(&result, Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists) {
        // Removing a link removes the link, not what it points to.
        let _ = std::fs::remove_file(tmp);
        result = write();
    }
    if result.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    result
}

/// Syncs a record's bytes to disk. A file system that cannot sync (some
/// FUSE ones refuse) still gets its record, as before the sync was made; a
/// sync that fails (EIO) fails the write, and the record on disk stays as
/// it was.
pub fn sync_unless_unsupported(f: &std::fs::File) -> std::io::Result<()> {
    match f.sync_data() {
        Err(e) if !cannot_sync(&e) => Err(e),
        _ => Ok(()),
    }
}

/// A file system that does not do fsync, as opposed to one that failed it.
fn cannot_sync(e: &std::io::Error) -> bool {
    #[cfg(unix)]
    if let Some(code) = e.raw_os_error() {
        return code == libc::EINVAL || code == libc::ENOSYS || code == libc::EOPNOTSUPP;
    }
    e.kind() == std::io::ErrorKind::Unsupported
}

/// A temporary name beside the record: fixed for the lock's holder, else
/// unique to this process and write.
fn temp_path(path: &Path, locked: bool) -> PathBuf {
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    if locked {
        return locked_temp_path(path);
    }
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    sidecar_path(path, &format!(".{}.{n}.tmp", std::process::id()))
}

/// The temporary name the lock's holder writes through.
pub fn locked_temp_path(path: &Path) -> PathBuf {
    sidecar_path(path, LOCKED_TEMP_SUFFIX)
}

/// A file of ours beside the record, `.<record name><suffix>`, within the
/// 255 bytes a file name may have: a record name too long for that keeps
/// its start and gets a digest of the whole name in place of the rest.
pub fn sidecar_path(record: &Path, suffix: &str) -> PathBuf {
    const NAME_MAX: usize = 255;
    let raw = record.file_name().map(|n| n.as_encoded_bytes()).unwrap_or_default();
    let name = String::from_utf8_lossy(raw);
    let full = format!(".{name}{suffix}");
    if full.len() <= NAME_MAX {
        return record.with_file_name(full);
    }
    let digest = crate::sign::hex(&crate::md5::digest(raw));
    // '.', the kept start, '~', 16 digits of the digest, the suffix.
    let mut keep = NAME_MAX.saturating_sub(2 + 16 + suffix.len()).min(name.len());
    while !name.is_char_boundary(keep) {
        keep -= 1;
    }
    record.with_file_name(format!(".{}~{}{suffix}", &name[..keep], &digest[..16]))
}

pub const LOCKED_TEMP_SUFFIX: &str = ".obs-tmp";

/// Removes the record; a record already gone is fine.
pub async fn remove(path: &Path) {
    let _ = tokio::fs::remove_file(path).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_strings_and_json_as_javascript_prints_them() {
        // Expected values printed by Node 20.
        let cases: [(f64, &str); 19] = [
            (1.0, "1"),
            (-1.0, "-1"),
            (1.5, "1.5"),
            (0.1, "0.1"),
            (0.000001, "0.000001"),
            (1e-7, "1e-7"),
            (123456789012345680000.0, "123456789012345680000"),
            (1e21, "1e+21"),
            (1.5e21, "1.5e+21"),
            (18446744073709551616.0, "18446744073709552000"),
            (9007199254740994.0, "9007199254740994"),
            (-0.000123, "-0.000123"),
            (1e300, "1e+300"),
            (5e-324, "5e-324"),
            (1.0 / 3.0, "0.3333333333333333"),
            (100.0, "100"),
            (1e20, "100000000000000000000"),
            (12345.678, "12345.678"),
            (-0.0, "0"),
        ];
        for (n, js) in cases {
            assert_eq!(js_number(n), js, "{n:e}");
        }
        let v = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
        assert_eq!(js_string(&v("[null,1]")), ",1");
        assert_eq!(js_string(&v("[[1,[null]],{}]")), "1,,[object Object]");
        assert_eq!(js_string(&v("[true,\"x\",1.5]")), "true,x,1.5");
        assert_eq!(js_string(&v("18446744073709551615")), "18446744073709552000");
        assert_eq!(
            js_json(&v(r#"{"1":[0.5,null,18446744073709551616],"b":1e-7,"s":"q\"\u0001é"}"#)),
            r#"{"1":[0.5,null,18446744073709552000],"b":1e-7,"s":"q\"\u0001é"}"#
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_link_or_leftover_at_the_temporary_name_is_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let victim = dir.join("victim");
        std::fs::write(&victim, b"keep me").unwrap();
        let record = dir.join("r.upload_record");
        let tmp = dir.join(".r.upload_record.tmp");
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        save_via(&record, &tmp, b"{\"a\":1}").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
        assert_eq!(std::fs::read(&record).unwrap(), b"{\"a\":1}");
        assert!(std::fs::symlink_metadata(&tmp).is_err(), "the temporary name is gone after the rename");
    }

    #[test]
    fn names_beside_a_long_record_name_still_fit_and_stay_apart() {
        let dir = Path::new("/some/dir");
        let short = dir.join("r.upload_record");
        assert_eq!(sidecar_path(&short, ".x"), dir.join(".r.upload_record.x"));
        for len in [240usize, 250, 255] {
            let a = dir.join("é".repeat(len / 2) + &"a".repeat(len % 2));
            let mut b_name = a.file_name().unwrap().to_string_lossy().into_owned();
            b_name.pop();
            b_name.push('b');
            let b = dir.join(b_name);
            for suffix in [LOCKED_TEMP_SUFFIX, ".obs-lock", ".123456.789.tmp"] {
                let (sa, sb) = (sidecar_path(&a, suffix), sidecar_path(&b, suffix));
                for s in [&sa, &sb] {
                    let n = s.file_name().unwrap().to_str().unwrap();
                    assert!(n.len() <= 255 && n.starts_with('.') && n.ends_with(suffix), "{n}");
                    assert_eq!(s.parent(), Some(dir));
                }
                assert_ne!(sa, sb, "names that differ only at the end get different files");
            }
        }
    }

    #[test]
    fn the_lock_holder_replaces_what_a_killed_writer_left() {
        let dir = tempfile::tempdir().unwrap();
        let record = dir.path().join("r.upload_record");
        let leftover = temp_path(&record, true);
        assert_eq!(leftover, dir.path().join(".r.upload_record.obs-tmp"));
        std::fs::write(&leftover, b"{\"torn").unwrap();
        save(&record, b"{\"a\":1}", true).unwrap();
        assert_eq!(std::fs::read(&record).unwrap(), b"{\"a\":1}");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("r.upload_record")], "only the record is left");
    }

    fn sample() -> Checkpoint {
        Checkpoint {
            bucket_name: "bucket".into(),
            object_key: "key".into(),
            upload_file: "/tmp/file".into(),
            part_size: 5_242_880,
            part_count: 2,
            content_type: None,
            acl: None,
            website_redirect_location: None,
            sse_kms: None,
            sse_kms_key: None,
            sse_c: None,
            sse_c_key: None,
            metadata: None,
            expires: None,
            md5: String::new(),
            upload_file_stat: FileStat { file_size: 6_000_000, last_modified: "Tue, 24 Nov 2026 21:25:48 GMT".into(), check_sum: None },
            parts_meta: BTreeMap::new(),
            upload_id: None,
        }
    }

    // Golden digests computed by esdk-obs-nodejs 3.26.8's own
    // calculateUploadCheckpointMD5 on the same records.
    #[test]
    fn md5_rule_matches_the_reference() {
        let mut cp = sample();
        assert_eq!(cp.compute_md5(true), "ILlgWxsQ+8TjNsUsLKLB3A==");
        cp.upload_id = Some("upload-1".into());
        cp.content_type = Some("text/plain".into());
        cp.metadata = Some(serde_json::json!({"b": "2", "a": "1"}));
        cp.parts_meta.insert(2, PartMeta { offset: 5_242_880, part_size: 757_120, etag: None, is_completed: false });
        cp.parts_meta.insert(1, PartMeta { offset: 0, part_size: 5_242_880, etag: Some("\"e1\"".into()), is_completed: true });
        assert_eq!(cp.compute_md5(true), "Nw5BtqjWUvullpw8Ca/TCw==");
    }

    #[test]
    fn json_layout_matches_the_reference() {
        let mut cp = sample();
        cp.upload_id = Some("u".into());
        cp.parts_meta.insert(1, PartMeta { offset: 0, part_size: 5_242_880, etag: Some("\"e\"".into()), is_completed: true });
        cp.sse_c_key = Some("secret-key".into());
        cp.seal();
        let json = serde_json::to_string(&cp).unwrap();
        assert!(!json.contains("secret-key"), "no secret in a record");
        assert!(json.starts_with(r#"{"bucketName":"bucket","objectKey":"key","uploadFile":"/tmp/file","partSize":5242880,"partCount":2,"md5":""#));
        assert!(json.ends_with(
            r#""uploadFileStat":{"fileSize":6000000,"lastModified":"Tue, 24 Nov 2026 21:25:48 GMT"},"partsMeta":{"1":{"offset":0,"partSize":5242880,"etag":"\"e\"","isCompleted":true}},"uploadId":"u"}"#
        ));
        let back: Checkpoint = serde_json::from_str(&json).unwrap();
        assert!(back.md5_is_valid());
    }

    #[test]
    fn tampering_breaks_the_digest() {
        let mut cp = sample();
        cp.upload_id = Some("u".into());
        cp.seal();
        assert!(cp.md5_is_valid());
        cp.part_size += 1;
        assert!(!cp.md5_is_valid());
    }

    #[test]
    fn save_is_atomic_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rec");
        let mut cp = sample();
        cp.seal();
        let json = serde_json::to_vec(&cp).unwrap();
        save(&path, &json, false).unwrap();
        save(&path, &json, true).unwrap();
        let back: Checkpoint = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(back, cp);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn utc_string_is_javascripts() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_795_555_548_999);
        assert_eq!(utc_string(t), "Tue, 24 Nov 2026 21:25:48 GMT");
    }
}
