//! Fault injection rules set through the control port (`POST /faults`): what a rule
//! matches, what it does, and the book of rules that the front consults for every
//! request.
//!
//! Matching is first-rule-wins in creation order. Every rule whose pattern matches a
//! request counts it (`matched`), so `skip` means "let the first N requests that match
//! this rule pass", whatever other rules did with them; the first rule that is past
//! its skip and not yet used up fires, and only it.
//!
//! Actions (the `action` object; exactly one of the outcomes, `delay_ms` may go with any):
//!
//! | action | effect |
//! |---|---|
//! | `{"status":503,"code":"SlowDown","message":"...","no_drain":false}` | answer this S3 error without asking the store (the body is read first unless `no_drain`) |
//! | `{"status":200,"body":"..."}` | answer this status with this text as the body (`text/plain`), without asking the store |
//! | `{"replace_body":"..."}` | let the store act (its answer read to its end), then answer 200 with this text (`text/plain`) instead |
//! | `{"reset_after_bytes":N}` | read N body bytes, then reset the connection |
//! | `{"delay_ms":N}` | wait N ms, then pass the request on; with another outcome: wait, then do it |
//! | `{"hang":true}` | read the body and never answer |
//! | `{"drop_response":true}` | let the store act, then close the connection instead of answering |
//! | `{"respond_after_ms":N}` | let the store act (to its end, even if the client goes away meanwhile), then hold its answer N ms before sending it |
//! | `{"read_bytes_per_sec":N}` | pass the request on, reading its body at most N bytes a second (a slow link); the store acts to its end on what arrived, even if the client goes away meanwhile |

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use hyper::StatusCode;
use serde::{Deserialize, Serialize};

use crate::request_target::query_pairs;

/// A rule as the test wrote it; kept for `GET /faults`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_contains: Option<String>,
    /// key -> null (present with any value) or the exact value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub skip: u64,
    /// How many matching requests get the fault; 0 means every one, forever.
    #[serde(default = "one")]
    pub times: u64,
    pub action: ActionSpec,
}

fn one() -> u64 {
    1
}

/// The action object, flat as tests write it: `{"status":503,"code":"SlowDown"}`,
/// `{"reset_after_bytes":1024}`, `{"delay_ms":200}`, `{"hang":true}`,
/// `{"drop_response":true}`, `{"respond_after_ms":3000}`. `delay_ms` may also be
/// combined with any other action (wait, then do it).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ActionSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_drain: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_after_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hang: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drop_response: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub respond_after_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_bytes_per_sec: Option<u64>,
    /// With `status`: this text is the answer's body, in place of an S3 error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_body: Option<String>,
}

/// What the front does to a request a rule fired on.
#[derive(Debug, Clone)]
pub struct Action {
    pub delay: Option<Duration>,
    pub outcome: Outcome,
}

#[derive(Debug, Clone)]
pub enum Outcome {
    /// Pass the request on (a pure delay).
    Pass,
    /// Answer an S3 XML error without asking the backend.
    Error {
        status: StatusCode,
        code: String,
        message: String,
        drain_body: bool,
        /// Sent as is (`text/plain`) in place of the S3 error document.
        raw_body: Option<String>,
    },
    /// Let the backend act to its end (its answer read whole), then answer 200
    /// with this text (`text/plain`) in place of its answer.
    Replace { body: String },
    /// Read this many body bytes, then reset the connection.
    Reset { after_bytes: u64 },
    /// Swallow the body and never answer.
    Hang,
    /// Let the backend act, then close the connection instead of answering.
    DropResponse,
    /// Let the backend act to its end (its whole answer read, in a task of its
    /// own so that a client going away does not cut the store's work short), then
    /// hold the answer this long before sending it: the request takes effect and
    /// the client hears of it only later (or never, if it dies meanwhile).
    RespondAfter { hold: Duration },
    /// Pass the request on, reading its body at most this many bytes a second.
    Throttle { per_sec: u64 },
}

impl ActionSpec {
    fn to_action(&self) -> Result<Action, String> {
        let mut outcomes = Vec::new();
        if let Some(status) = self.status {
            let status =
                StatusCode::from_u16(status).map_err(|_| format!("invalid status {status}"))?;
            outcomes.push(Outcome::Error {
                status,
                code: self
                    .code
                    .clone()
                    .unwrap_or_else(|| default_code(status).to_owned()),
                message: self
                    .message
                    .clone()
                    .unwrap_or_else(|| "Fault injected by obs-testkit".to_owned()),
                drain_body: !self.no_drain,
                raw_body: self.body.clone(),
            });
        } else if self.code.is_some() || self.message.is_some() || self.no_drain || self.body.is_some() {
            return Err("code, message, no_drain and body go with status".to_owned());
        }
        if let Some(body) = &self.replace_body {
            outcomes.push(Outcome::Replace { body: body.clone() });
        }
        if let Some(after_bytes) = self.reset_after_bytes {
            outcomes.push(Outcome::Reset { after_bytes });
        }
        if self.hang {
            outcomes.push(Outcome::Hang);
        }
        if self.drop_response {
            outcomes.push(Outcome::DropResponse);
        }
        if let Some(ms) = self.respond_after_ms {
            outcomes.push(Outcome::RespondAfter {
                hold: Duration::from_millis(ms),
            });
        }
        if let Some(per_sec) = self.read_bytes_per_sec {
            outcomes.push(Outcome::Throttle { per_sec });
        }
        let delay = self.delay_ms.map(Duration::from_millis);
        let outcome = match outcomes.len() {
            0 if delay.is_some() => Outcome::Pass,
            1 => outcomes.remove(0),
            _ => {
                return Err(
                    "action needs exactly one of status, reset_after_bytes, hang, drop_response, respond_after_ms, read_bytes_per_sec, replace_body (delay_ms may go with any)"
                        .to_owned(),
                );
            }
        };
        Ok(Action { delay, outcome })
    }
}

/// The S3 code a test most likely means when it only gives a status.
fn default_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "BadRequest",
        403 => "AccessDenied",
        404 => "NoSuchKey",
        405 => "MethodNotAllowed",
        409 => "OperationAborted",
        429 => "TooManyRequests",
        500 => "InternalError",
        501 => "NotImplemented",
        503 => "ServiceUnavailable",
        _ => "InjectedFault",
    }
}

struct Fault {
    id: u64,
    spec: FaultSpec,
    method: Option<String>,
    query: Vec<(String, Option<String>)>,
    action: Action,
    matched: u64,
    fired: u64,
}

impl Fault {
    fn new(id: u64, spec: FaultSpec) -> Result<Self, String> {
        let action = spec.action.to_action()?;
        let mut query = Vec::with_capacity(spec.query.len());
        for (key, value) in &spec.query {
            let value = match value {
                serde_json::Value::Null => None,
                serde_json::Value::String(s) => Some(s.clone()),
                // Accept {"partNumber":3} as meaning "3".
                serde_json::Value::Number(n) => Some(n.to_string()),
                serde_json::Value::Bool(b) => Some(b.to_string()),
                other => {
                    return Err(format!(
                        "query value for {key:?} must be null or a string, not {other}"
                    ));
                }
            };
            query.push((key.clone(), value));
        }
        Ok(Self {
            id,
            method: spec.method.as_ref().map(|m| m.to_ascii_uppercase()),
            spec,
            query,
            action,
            matched: 0,
            fired: 0,
        })
    }

    fn matches(&self, method: &str, path: &str, pairs: &[(String, String)]) -> bool {
        if self.method.as_deref().is_some_and(|m| m != method) {
            return false;
        }
        if self
            .spec
            .path_contains
            .as_deref()
            .is_some_and(|needle| !path.contains(needle))
        {
            return false;
        }
        self.query.iter().all(|(key, wanted)| {
            pairs
                .iter()
                .any(|(k, v)| k == key && wanted.as_deref().is_none_or(|wanted| wanted == v))
        })
    }

    fn armed(&self) -> bool {
        self.matched > self.spec.skip && (self.spec.times == 0 || self.fired < self.spec.times)
    }
}

#[derive(Default)]
struct Book {
    next_id: u64,
    faults: Vec<Fault>,
}

#[derive(Default)]
pub struct FaultBook {
    book: Mutex<Book>,
}

impl FaultBook {
    pub fn add(&self, spec: FaultSpec) -> Result<u64, String> {
        let mut book = self.lock();
        let id = book.next_id + 1;
        let fault = Fault::new(id, spec)?;
        book.next_id = id;
        book.faults.push(fault);
        Ok(id)
    }

    pub fn clear(&self) {
        self.lock().faults.clear();
    }

    /// The rule that fires on this request, if any, as (rule id, action).
    pub fn pick(&self, method: &str, path: &str, raw_query: &str) -> Option<(u64, Action)> {
        let mut book = self.lock();
        if book.faults.is_empty() {
            return None;
        }
        let pairs = query_pairs(raw_query);
        let mut picked = None;
        for fault in &mut book.faults {
            if !fault.matches(method, path, &pairs) {
                continue;
            }
            fault.matched += 1;
            if picked.is_none() && fault.armed() {
                fault.fired += 1;
                picked = Some((fault.id, fault.action.clone()));
            }
        }
        picked
    }

    pub fn to_json(&self) -> serde_json::Result<String> {
        let book = self.lock();
        let mut listed = Vec::with_capacity(book.faults.len());
        for fault in &book.faults {
            let mut entry = serde_json::to_value(&fault.spec)?;
            if let Some(object) = entry.as_object_mut() {
                object.insert("id".to_owned(), fault.id.into());
                object.insert("matched".to_owned(), fault.matched.into());
                object.insert("fired".to_owned(), fault.fired.into());
            }
            listed.push(entry);
        }
        serde_json::to_string(&serde_json::json!({ "faults": listed }))
    }

    fn lock(&self) -> MutexGuard<'_, Book> {
        self.book
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> FaultSpec {
        serde_json::from_str(json).expect("valid spec")
    }

    #[test]
    fn skip_and_times() {
        let book = FaultBook::default();
        let id = book
            .add(spec(r#"{"method":"put","query":{"partNumber":"3","uploadId":null},"skip":1,"times":2,"action":{"status":503}}"#))
            .expect("added");
        let q = "partNumber=3&uploadId=abc";
        assert!(book.pick("PUT", "/b/k", q).is_none(), "skipped");
        assert_eq!(book.pick("PUT", "/b/k", q).map(|p| p.0), Some(id));
        assert!(
            book.pick("PUT", "/b/k", "partNumber=2&uploadId=abc")
                .is_none()
        );
        assert!(
            book.pick("PUT", "/b/k", "partNumber=3").is_none(),
            "uploadId missing"
        );
        assert!(book.pick("GET", "/b/k", q).is_none());
        assert_eq!(book.pick("PUT", "/b/k", q).map(|p| p.0), Some(id));
        assert!(book.pick("PUT", "/b/k", q).is_none(), "used up");
    }

    #[test]
    fn rejects_ambiguous_actions() {
        let book = FaultBook::default();
        assert!(
            book.add(spec(r#"{"action":{"status":500,"hang":true}}"#))
                .is_err()
        );
        assert!(book.add(spec(r#"{"action":{}}"#)).is_err());
        assert!(book.add(spec(r#"{"action":{"status":1000}}"#)).is_err());
        assert!(
            book.add(spec(r#"{"action":{"delay_ms":5,"status":500}}"#))
                .is_ok()
        );
        assert!(serde_json::from_str::<FaultSpec>(r#"{"action":{"reset_after":5}}"#).is_err());
    }

    #[test]
    fn respond_after() {
        let book = FaultBook::default();
        let id = book
            .add(spec(
                r#"{"method":"POST","query":{"uploadId":null},"action":{"respond_after_ms":1500}}"#,
            ))
            .expect("added");
        assert!(book.pick("POST", "/b/k", "uploads").is_none());
        match book.pick("POST", "/b/k", "uploadId=abc") {
            Some((picked, action)) => {
                assert_eq!(picked, id);
                assert!(action.delay.is_none());
                assert!(matches!(
                    action.outcome,
                    Outcome::RespondAfter { hold } if hold == Duration::from_millis(1500)
                ));
            }
            None => panic!("the rule should fire"),
        }
        assert!(
            book.pick("POST", "/b/k", "uploadId=abc").is_none(),
            "used up"
        );
        assert!(
            book.add(spec(
                r#"{"action":{"respond_after_ms":5,"drop_response":true}}"#
            ))
            .is_err()
        );
        assert!(
            book.add(spec(r#"{"action":{"respond_after_ms":5,"status":500}}"#))
                .is_err()
        );
        assert!(
            book.add(spec(r#"{"action":{"respond_after_ms":0,"delay_ms":5}}"#))
                .is_ok()
        );
        let listed = book.to_json().expect("json");
        assert!(listed.contains(r#""respond_after_ms":1500"#), "{listed}");
    }

    #[test]
    fn read_bytes_per_sec() {
        let book = FaultBook::default();
        book.add(spec(r#"{"method":"PUT","times":0,"action":{"read_bytes_per_sec":200000}}"#))
            .expect("added");
        match book.pick("PUT", "/b/k", "partNumber=1&uploadId=u") {
            Some((_, action)) => {
                assert!(matches!(action.outcome, Outcome::Throttle { per_sec: 200_000 }))
            }
            None => panic!("the rule should fire"),
        }
        assert!(
            book.add(spec(r#"{"action":{"read_bytes_per_sec":5,"hang":true}}"#))
                .is_err()
        );
    }
}
