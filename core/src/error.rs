//! The one error type of the core: what went wrong (kind and stable code),
//! whether trying again can help, and where (upload id, part number).

use std::fmt;

/// What kind of failure this is; decides retries and what the upload keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The caller's input is wrong; nothing was sent.
    InvalidArgument,
    /// Reading the local file or writing the record failed.
    Io,
    /// The checkpoint record is unreadable or does not match the file.
    Checkpoint,
    /// No answer: connection refused or reset, timeout, DNS.
    Network,
    /// The server answered with an error status (see `status`).
    Service,
    /// Parts failed after their retries; the record and upload are kept.
    Incomplete,
    /// Stopped by the caller; the record and upload are kept.
    Cancelled,
    /// Stopped by the caller; the upload was aborted and the record removed.
    Aborted,
}

/// Details the server sent with an error answer (the reference SDK's CommonMsg).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceDetails {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub request_id: String,
    pub host_id: String,
    pub id2: String,
    pub indicator: String,
}

#[derive(Debug, Clone)]
pub struct Error {
    pub kind: ErrorKind,
    /// Stable code: an OBS/S3 code such as `NoSuchBucket`, or an SDK code
    /// such as `InvalidArgument`, `CheckpointFileInvalid`, `IncompletedUpload`.
    pub code: String,
    pub message: String,
    pub retryable: bool,
    pub service: Option<Box<ServiceDetails>>,
    pub upload_id: Option<String>,
    pub part_number: Option<u32>,
    /// Printed as the code alone when the message is empty, as the
    /// reference SDK prints the refusal of a part or of the complete
    /// (`EntityTooSmall`, where an initiate's is `AccessDenied:`).
    pub bare_when_empty: bool,
    /// No connection could be opened because the process (or the system)
    /// had no file descriptor left (EMFILE, ENFILE): nothing reached the
    /// server, and the request waits for a descriptor to be freed instead
    /// of spending a retry.
    pub out_of_descriptors: bool,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, code: impl Into<String>, message: impl Into<String>) -> Self {
        Error {
            kind,
            code: code.into(),
            message: message.into(),
            retryable: false,
            service: None,
            upload_id: None,
            part_number: None,
            bare_when_empty: false,
            out_of_descriptors: false,
        }
    }

    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidArgument, "InvalidArgument", message)
    }

    pub fn io(code: &str, context: &str, err: &std::io::Error) -> Self {
        Error::new(ErrorKind::Io, code, format!("{context}: {err}"))
    }

    pub fn network(message: impl Into<String>) -> Self {
        Error { retryable: true, ..Error::new(ErrorKind::Network, "NetworkError", message) }
    }

    /// An error answer from the server. 5xx, 429 and 408 are worth retrying.
    pub fn service(details: ServiceDetails) -> Self {
        let status = details.status;
        let code = if details.code.is_empty() { format!("HttpStatus{status}") } else { details.code.clone() };
        Error {
            retryable: status >= 500 || status == 429 || status == 408,
            ..Error::new(ErrorKind::Service, code, details.message.clone())
        }
        .with_service(details)
    }

    fn with_service(mut self, details: ServiceDetails) -> Self {
        self.service = Some(Box::new(details));
        self
    }

    pub fn with_upload_id(mut self, upload_id: &str) -> Self {
        self.upload_id = Some(upload_id.to_string());
        self
    }

    pub fn with_part(mut self, part_number: u32) -> Self {
        self.part_number = Some(part_number);
        self
    }

    pub fn status(&self) -> Option<u16> {
        self.service.as_ref().map(|s| s.status)
    }

    /// The reference SDK's summary of a failed request, used inside other
    /// messages: `Status:503,Code:SlowDown,Message:...`.
    pub fn summary(&self) -> String {
        match &self.service {
            Some(s) => format!("Status:{},Code:{},Message:{}", s.status, s.code, s.message),
            // As Node prints the error of a request that got no answer.
            None if self.kind == ErrorKind::Network => format!("Error: {}", self.message),
            None => format!("{}:{}", self.code, self.message),
        }
    }
}

impl fmt::Display for Error {
    /// `Code:Message`, the form the reference SDK passes to callbacks.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.bare_when_empty && self.message.is_empty() {
            write!(f, "{}", self.code)
        } else {
            write!(f, "{}:{}", self.code, self.message)
        }
    }
}

impl std::error::Error for Error {}
