//! obs-core: everything obs-native does, without Node. Signing (`sign`),
//! HTTP with retries (`http`), the multipart operations (`ops`), and the
//! resumable upload (`upload`: plan, checkpoint, scheduler). The napi
//! binding at the repository root only converts values to and from this.

mod buffer;
pub mod config;
pub mod error;
pub mod http;
pub mod mime;
pub mod ops;
pub mod sign;
pub mod upload;
mod xml;

pub use config::{ClientConfig, ClientOptions};
pub use error::{Error, ErrorKind, Result};
