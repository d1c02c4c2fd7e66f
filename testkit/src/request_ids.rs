//! The `x-amz-request-id` / `x-amz-id-2` pair that every response carries.
//!
//! Clients copy these into their results (the reference SDK's `RequestId` and `Id2`),
//! so they must be present on every answer, including errors and injected faults,
//! and different from one request to the next. They only need to look plausible and
//! be unique within a run: a seeded counter through a mixing function is enough and
//! costs nothing next to the request itself.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use hyper::header::{HeaderMap, HeaderName, HeaderValue};

pub const X_AMZ_REQUEST_ID: HeaderName = HeaderName::from_static("x-amz-request-id");
pub const X_AMZ_ID_2: HeaderName = HeaderName::from_static("x-amz-id-2");

pub struct RequestIdSource {
    seed: u64,
    next: AtomicU64,
}

/// The ids of one request.
#[derive(Debug, Clone)]
pub struct RequestIds {
    pub request_id: String,
    pub host_id: String,
}

impl RequestIdSource {
    pub fn new() -> Self {
        Self {
            seed: random_seed(),
            next: AtomicU64::new(1),
        }
    }

    pub fn next_ids(&self) -> RequestIds {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let a = mix(self.seed ^ n);
        let b = mix(a ^ 0x5bd1_e995);
        let c = mix(b ^ n.rotate_left(32));
        RequestIds {
            request_id: format!("{a:016X}"),
            host_id: format!("{b:016x}{c:016x}"),
        }
    }
}

impl RequestIds {
    /// Adds both headers unless the store already set them.
    pub fn stamp(&self, headers: &mut HeaderMap) {
        for (name, value) in [
            (X_AMZ_REQUEST_ID, &self.request_id),
            (X_AMZ_ID_2, &self.host_id),
        ] {
            if !headers.contains_key(&name)
                && let Ok(value) = HeaderValue::from_str(value)
            {
                headers.insert(name, value);
            }
        }
    }
}

/// A fresh random u64. RandomState is seeded from the OS: two servers started in one
/// test run hand out different ids, without pulling in a random number crate.
pub fn random_seed() -> u64 {
    RandomState::new().hash_one(std::process::id())
}

/// splitmix64's finaliser: turns a counter into well-spread bits.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
