//! What the proxy saw: every destination the job asked for, allowed or
//! refused, with the bytes moved each way. Counted live, so the record
//! taken when the job ends holds everything that passed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::supervisor::Denial;

/// Destinations reached are kept up to `KEPT_REACHED`, and the result
/// lists the `MAX_LISTED` that moved the most bytes; destinations refused
/// or not reached are kept and listed up to `MAX_REFUSED`. Apart, so that
/// refusals and failed lookups cannot push an upload out of the record;
/// what is left out is counted, with its bytes.
const KEPT_REACHED: usize = 4096;
const MAX_LISTED: usize = 256;
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
    /// The counters of destinations that made room for others.
    evicted: Vec<Arc<Counters>>,
}

/// Destinations evicted at most (their counters are kept to sum them).
const MAX_EVICTED: usize = 65536;

fn moved(c: &Counters) -> u64 {
    c.sent.load(Ordering::Relaxed) + c.received.load(Ordering::Relaxed)
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
        let reached = address.is_some();
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
                let full = if reached {
                    e.allowed >= KEPT_REACHED
                } else {
                    e.refused >= MAX_REFUSED
                };
                // Full of destinations reached: the one that moved least
                // so far makes room (its bytes still count, as omitted),
                // so that a flood of cheap connections cannot keep a
                // later upload out of the record.
                let evict = (full && reached && e.evicted.len() < MAX_EVICTED)
                    .then(|| {
                        (0..e.order.len())
                            .filter(|&i| e.order[i].address.is_some())
                            .min_by_key(|&i| moved(&e.order[i].counters))
                    })
                    .flatten();
                let counters = Arc::<Counters>::default();
                let entry = Entry {
                    host: host.to_string(),
                    port,
                    allowed,
                    address,
                    reason,
                    hint,
                    counters: counters.clone(),
                };
                if let Some(i) = evict {
                    let old = std::mem::replace(&mut e.order[i], entry);
                    e.index.remove(&(old.host, old.port, old.allowed));
                    e.index.insert(key, i);
                    e.evicted.push(old.counters);
                    e.omitted += 1;
                    counters
                } else if full {
                    e.omitted += 1;
                    self.omitted.clone()
                } else {
                    if reached {
                        e.allowed += 1;
                    } else {
                        e.refused += 1;
                    }
                    let i = e.order.len();
                    e.index.insert(key, i);
                    e.order.push(entry);
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
        let shown = |d: &Entry| Destination {
            host: d.host.clone(),
            port: d.port,
            allowed: d.allowed,
            address: d.address,
            reason: d.reason.clone(),
            requests: d.counters.requests.load(Ordering::Relaxed),
            bytes_sent: d.counters.sent.load(Ordering::Relaxed),
            bytes_received: d.counters.received.load(Ordering::Relaxed),
        };
        let all: Vec<Destination> = e.order.iter().map(shown).collect();
        // Of the destinations reached, those that moved the most bytes.
        let mut reached: Vec<usize> = (0..all.len())
            .filter(|&i| e.order[i].address.is_some())
            .collect();
        reached.sort_by_key(|&i| std::cmp::Reverse(all[i].bytes_sent + all[i].bytes_received));
        let listed: std::collections::BTreeSet<usize> = reached
            .iter()
            .take(MAX_LISTED)
            .copied()
            .chain((0..all.len()).filter(|&i| e.order[i].address.is_none()))
            .collect();
        let mut report = NetworkReport {
            mode: "proxy".into(),
            destinations: Vec::new(),
            destinations_omitted: e.omitted,
            omitted_bytes_sent: self.omitted.sent.load(Ordering::Relaxed)
                + e.evicted
                    .iter()
                    .map(|c| c.sent.load(Ordering::Relaxed))
                    .sum::<u64>(),
            omitted_bytes_received: self.omitted.received.load(Ordering::Relaxed)
                + e.evicted
                    .iter()
                    .map(|c| c.received.load(Ordering::Relaxed))
                    .sum::<u64>(),
        };
        for (i, d) in all.into_iter().enumerate() {
            if listed.contains(&i) {
                report.destinations.push(d);
            } else {
                report.destinations_omitted += 1;
                report.omitted_bytes_sent += d.bytes_sent;
                report.omitted_bytes_received += d.bytes_received;
            }
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Refusals and failed lookups cannot push an upload out of the
    /// record, nor can destinations that moved less; what is left out is
    /// counted with its bytes.
    #[test]
    fn an_upload_stays_listed_whatever_else_is_asked() {
        let ledger = Ledger::default();
        for i in 0..300 {
            let reason = "cannot resolve".to_string();
            ledger.record(&format!("junk{i}.test"), 443, Verdict::Failed { reason });
            let (reason, hint) = ("not in network.allow_domains".to_string(), String::new());
            ledger.record(
                &format!("no{i}.test"),
                443,
                Verdict::Refused { reason, hint },
            );
        }
        let address = "93.184.215.14".parse().unwrap();
        for i in 0..300 {
            let c = ledger.record(&format!("small{i}.test"), 443, Verdict::Allowed { address });
            c.sent.fetch_add(10, Ordering::Relaxed);
        }
        // More cheap destinations than are kept: the upload after them
        // still takes a place.
        for i in 0..KEPT_REACHED {
            ledger.record(&format!("cheap{i}.test"), 443, Verdict::Allowed { address });
        }
        let upload = ledger.record("real.test", 443, Verdict::Allowed { address });
        upload.sent.fetch_add(100_000, Ordering::Relaxed);
        let report = ledger.report();
        let real = report
            .destinations
            .iter()
            .find(|d| d.host == "real.test")
            .expect("the upload is listed");
        assert_eq!(real.bytes_sent, 100_000);
        let reached = report.destinations.iter().filter(|d| d.address.is_some());
        assert_eq!(reached.count(), MAX_LISTED);
        // Every small one beyond the 256 listed, every cheap one, and
        // every refusal and failure past the 64 kept.
        assert_eq!(report.omitted_bytes_sent, 45 * 10);
        assert_eq!(
            report.destinations_omitted,
            (300 + KEPT_REACHED as u64 + 1 - 256) + (600 - 64)
        );
    }
}
