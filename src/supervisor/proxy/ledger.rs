//! What the proxy saw: every destination the job asked for, allowed or
//! refused, with the bytes moved each way. Counted live, so the record
//! taken when the job ends holds everything that passed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::supervisor::Denial;

/// At most this many allowed destinations are listed, and this many
/// refused ones (kept apart, so that refusals cannot push an upload out of
/// the record); what is left out is counted, with its bytes.
const MAX_ALLOWED: usize = 256;
const MAX_REFUSED: usize = 64;

/// The network a proxied job used, in its result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NetworkReport {
    /// `proxy`.
    pub mode: String,
    /// Each host and port asked for, in the order first asked.
    pub destinations: Vec<Destination>,
    /// Further destinations asked for and not listed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub destinations_omitted: u64,
    /// What the destinations not listed moved, each way.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub omitted_bytes_sent: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub omitted_bytes_received: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One host and port the job asked the proxy for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Destination {
    pub host: String,
    pub port: u16,
    /// Whether the policy allowed it (a connection may still have failed).
    pub allowed: bool,
    /// The address last connected to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<std::net::IpAddr>,
    /// Why it was refused, or why no connection was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Times it was asked for.
    pub requests: u64,
    /// Bytes from the job to the host.
    pub bytes_sent: u64,
    /// Bytes from the host to the job.
    pub bytes_received: u64,
}

/// Live counters of one destination.
#[derive(Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub sent: Arc<AtomicU64>,
    pub received: Arc<AtomicU64>,
}

/// What the proxy decided for one request.
pub enum Verdict {
    /// Connected to `address`.
    Allowed { address: std::net::IpAddr },
    /// Allowed, but no connection was made.
    Failed { reason: String },
    /// Refused by the policy; `hint` says what would allow it.
    Refused { reason: String, hint: String },
}

struct Entry {
    host: String,
    port: u16,
    allowed: bool,
    address: Option<std::net::IpAddr>,
    reason: Option<String>,
    /// For a refusal: what would allow it.
    hint: Option<String>,
    counters: Arc<Counters>,
}

/// Shared by the proxy's threads.
#[derive(Default)]
pub struct Ledger {
    entries: Mutex<Entries>,
    /// Where the bytes of destinations not listed are counted.
    omitted: Arc<Counters>,
}

#[derive(Default)]
struct Entries {
    order: Vec<Entry>,
    index: BTreeMap<(String, u16, bool), usize>,
    allowed: usize,
    refused: usize,
    omitted: u64,
}

impl Ledger {
    /// Records one request for `host:port` (a host safe to show) and
    /// returns the counters its bytes go to.
    pub fn record(&self, host: &str, port: u16, verdict: Verdict) -> Arc<Counters> {
        let Ok(mut e) = self.entries.lock() else {
            return self.omitted.clone();
        };
        let (allowed, address, reason, hint) = match verdict {
            Verdict::Allowed { address } => (true, Some(address), None, None),
            Verdict::Failed { reason } => (true, None, Some(reason), None),
            Verdict::Refused { reason, hint } => (false, None, Some(reason), Some(hint)),
        };
        let key = (host.to_string(), port, allowed);
        let counters = match e.index.get(&key) {
            Some(&i) => {
                let entry = &mut e.order[i];
                if address.is_some() {
                    entry.address = address;
                }
                if entry.reason.is_none() {
                    entry.reason = reason;
                }
                entry.counters.clone()
            }
            None => {
                let full = if allowed {
                    e.allowed >= MAX_ALLOWED
                } else {
                    e.refused >= MAX_REFUSED
                };
                if full {
                    e.omitted += 1;
                    self.omitted.clone()
                } else {
                    if allowed {
                        e.allowed += 1;
                    } else {
                        e.refused += 1;
                    }
                    let counters = Arc::<Counters>::default();
                    let i = e.order.len();
                    e.order.push(Entry {
                        host: host.to_string(),
                        port,
                        allowed,
                        address,
                        reason,
                        hint,
                        counters: counters.clone(),
                    });
                    e.index.insert(key, i);
                    counters
                }
            }
        };
        counters.requests.fetch_add(1, Ordering::Relaxed);
        counters
    }

    /// The refused destinations, as denials.
    pub fn denials(&self) -> Vec<Denial> {
        let Ok(e) = self.entries.lock() else {
            return Vec::new();
        };
        e.order
            .iter()
            .filter(|d| !d.allowed)
            .map(|d| Denial {
                kind: "network".into(),
                target: format!("{}:{}", d.host, d.port),
                error: format!(
                    "refused by the proxy: {}",
                    d.reason.as_deref().unwrap_or("not allowed")
                ),
                hint: d.hint.clone().unwrap_or_default(),
            })
            .collect()
    }

    /// What has been seen so far.
    pub fn report(&self) -> NetworkReport {
        let Ok(e) = self.entries.lock() else {
            return NetworkReport::default();
        };
        NetworkReport {
            mode: "proxy".into(),
            destinations: e
                .order
                .iter()
                .map(|d| Destination {
                    host: d.host.clone(),
                    port: d.port,
                    allowed: d.allowed,
                    address: d.address,
                    reason: d.reason.clone(),
                    requests: d.counters.requests.load(Ordering::Relaxed),
                    bytes_sent: d.counters.sent.load(Ordering::Relaxed),
                    bytes_received: d.counters.received.load(Ordering::Relaxed),
                })
                .collect(),
            destinations_omitted: e.omitted,
            omitted_bytes_sent: self.omitted.sent.load(Ordering::Relaxed),
            omitted_bytes_received: self.omitted.received.load(Ordering::Relaxed),
        }
    }
}
