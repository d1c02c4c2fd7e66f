//! What the front passes requests on to: the s3s-fs store (mode s3) or the sink
//! (mode sink). Both see the request with its counting body and answer with an
//! s3s body, so the front treats them alike.

use hyper::{Request, Response};

use crate::sink::Sink;
use crate::stats::CountedBody;
use crate::store::{OpenUploads, Store};

pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

pub enum Backend {
    Store(Store),
    Sink(Sink),
}

impl Backend {
    pub async fn serve(
        &self,
        request: Request<CountedBody>,
    ) -> Result<Response<s3s::Body>, BoxError> {
        match self {
            Backend::Store(store) => store.serve(request).await,
            Backend::Sink(sink) => sink.serve(request).await,
        }
    }

    /// Upload ids of the multipart uploads still open.
    pub fn uploads(&self) -> Result<OpenUploads, String> {
        match self {
            Backend::Store(store) => store.uploads(),
            Backend::Sink(sink) => Ok(OpenUploads {
                uploads: sink.uploads(),
                orphan_parts: Vec::new(),
            }),
        }
    }
}
