//! obs-core: everything obs-native does, without Node. Signing (`sign`),
//! HTTP with retries (`http`), the multipart operations (`ops`), and the
//! resumable upload (`upload`: plan, checkpoint, scheduler). On Linux,
//! part bodies over plain HTTP go out with sendfile (`sendfile`). The napi
//! binding at the repository root only converts values to and from this.

mod buffer;
mod descriptors;
pub mod md5;
pub mod config;
pub mod error;
pub mod http;
pub mod mime;
pub mod ops;
#[cfg(target_os = "linux")]
mod sendfile;
pub mod sign;
pub mod upload;
mod xml;

pub use config::{ClientConfig, ClientOptions};
pub use error::{Error, ErrorKind, Result};
