//! The credentials the server accepts, shared by every signature check: the OBS
//! check in the front, s3s's own AWS V2/V4 checks in the store, and the security
//! token check of both. `POST /credentials` on the control port replaces them while
//! the server runs, so a test can rotate keys mid-upload or make a client's
//! temporary credentials expire.
//!
//! Also the two s3s hooks that read them: [`RingAuth`] (s3s asks it for the secret
//! key of a V2/V4 request) and [`StoreAccess`] (who may use the store, and who owns
//! a multipart upload).

use std::sync::{Arc, RwLock};

use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{Credentials, S3Auth, SecretKey};
use s3s::dto::{
    AbortMultipartUploadInput, CompleteMultipartUploadInput, CreateMultipartUploadInput,
    ListPartsInput, UploadPartCopyInput, UploadPartInput,
};
use s3s::{S3Error, S3ErrorCode, S3Request, S3Result};

/// One set of credentials: an access key, its secret, and, for temporary
/// credentials, the security token that must come with them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keys {
    pub access_key: String,
    pub secret_key: String,
    #[serde(default)]
    pub security_token: Option<String>,
}

impl Keys {
    pub fn validate(&self) -> Result<(), String> {
        if self.access_key.is_empty() || self.secret_key.is_empty() {
            return Err("access_key and secret_key must not be empty".to_owned());
        }
        if self.security_token.as_deref() == Some("") {
            return Err("security_token must not be empty (leave it out for none)".to_owned());
        }
        Ok(())
    }
}

/// The credentials in force. `None`: the server was started without keys, and the
/// store takes anonymous requests (as s3s does without auth).
#[derive(Debug, Default)]
pub struct KeyRing {
    current: RwLock<Option<Keys>>,
}

/// Why a security token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenProblem {
    Missing,
    Wrong,
}

impl KeyRing {
    pub fn new(keys: Option<Keys>) -> Self {
        Self {
            current: RwLock::new(keys),
        }
    }

    pub fn get(&self) -> Option<Keys> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn set(&self, keys: Keys) {
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(keys);
    }

    /// The secret of `access_key`, if it is the access key in force.
    pub fn secret_of(&self, access_key: &str) -> Option<String> {
        self.get()
            .filter(|keys| keys.access_key == access_key)
            .map(|keys| keys.secret_key)
    }

    /// Checks the token a signed request carried. With no token configured, any
    /// token (or none) passes: permanent keys do not need one.
    pub fn check_token(&self, presented: Option<&str>) -> Result<(), TokenProblem> {
        let Some(wanted) = self.get().and_then(|keys| keys.security_token) else {
            return Ok(());
        };
        match presented {
            None => Err(TokenProblem::Missing),
            Some(token) if token == wanted => Ok(()),
            Some(_) => Err(TokenProblem::Wrong),
        }
    }
}

/// Marks a request whose signature the front has already verified (OBS requests,
/// from which it then removes the `Authorization` s3s cannot read). Only the front
/// can put it into a request's extensions; no header or query can forge it.
#[derive(Debug, Clone, Copy)]
pub struct FrontVerified;

/// s3s's V2/V4 checks look the secret key up here, so they follow `POST /credentials`.
pub struct RingAuth(pub Arc<KeyRing>);

#[async_trait::async_trait]
impl S3Auth for RingAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        self.0
            .secret_of(access_key)
            .map(SecretKey::from)
            .ok_or_else(|| {
                S3Error::with_message(
                    S3ErrorCode::InvalidAccessKeyId,
                    "The access key Id you provided does not exist in our records.",
                )
            })
    }
}

/// Who may use the store, and who owns a multipart upload.
///
/// - A request s3s verified (credentials present) or the front verified
///   ([`FrontVerified`]) passes; an anonymous one is refused as s3s refuses it,
///   unless the server runs without keys.
/// - s3s-fs records the access key that initiated an upload and refuses its other
///   calls (UploadPart, Complete, Abort) from any other key with AccessDenied. On
///   OBS and S3 an upload belongs to the account, not to one of its keys, and the
///   OBS front hands s3s requests without credentials at all. So every verified
///   request reaches s3s-fs as the account (the access key the server started
///   with): uploads survive key rotation and may mix signature versions, as they
///   do on a real server.
pub struct StoreAccess {
    ring: Arc<KeyRing>,
    account: Option<String>,
}

impl StoreAccess {
    pub fn new(ring: Arc<KeyRing>, account: Option<String>) -> Self {
        Self { ring, account }
    }

    fn act_as_account<T>(&self, req: &mut S3Request<T>) {
        let Some(account) = &self.account else { return };
        if req.credentials.is_some() || req.extensions.get::<FrontVerified>().is_some() {
            req.credentials = Some(Credentials {
                access_key: account.clone(),
                secret_key: SecretKey::from(""),
            });
        }
    }
}

#[async_trait::async_trait]
impl S3Access for StoreAccess {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        if cx.credentials().is_some()
            || cx.extensions_mut().get::<FrontVerified>().is_some()
            || self.ring.get().is_none()
        {
            return Ok(());
        }
        Err(S3Error::with_message(
            S3ErrorCode::AccessDenied,
            "Signature is required",
        ))
    }

    async fn create_multipart_upload(
        &self,
        req: &mut S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<()> {
        self.act_as_account(req);
        Ok(())
    }

    async fn upload_part(&self, req: &mut S3Request<UploadPartInput>) -> S3Result<()> {
        self.act_as_account(req);
        Ok(())
    }

    async fn upload_part_copy(&self, req: &mut S3Request<UploadPartCopyInput>) -> S3Result<()> {
        self.act_as_account(req);
        Ok(())
    }

    async fn complete_multipart_upload(
        &self,
        req: &mut S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<()> {
        self.act_as_account(req);
        Ok(())
    }

    async fn abort_multipart_upload(
        &self,
        req: &mut S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<()> {
        self.act_as_account(req);
        Ok(())
    }

    async fn list_parts(&self, req: &mut S3Request<ListPartsInput>) -> S3Result<()> {
        self.act_as_account(req);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(token: Option<&str>) -> Keys {
        Keys {
            access_key: "ak".to_owned(),
            secret_key: "sk".to_owned(),
            security_token: token.map(str::to_owned),
        }
    }

    #[test]
    fn tokens() {
        let ring = KeyRing::new(Some(keys(None)));
        assert_eq!(ring.check_token(None), Ok(()));
        assert_eq!(ring.check_token(Some("anything")), Ok(()));
        ring.set(keys(Some("t1")));
        assert_eq!(ring.check_token(Some("t1")), Ok(()));
        assert_eq!(ring.check_token(Some("t2")), Err(TokenProblem::Wrong));
        assert_eq!(ring.check_token(None), Err(TokenProblem::Missing));
        assert_eq!(ring.secret_of("ak").as_deref(), Some("sk"));
        assert_eq!(ring.secret_of("other"), None);
    }
}
