//! Service metrics in Prometheus text format. A handful of atomics owned by the
//! application state (no global recorder), so tests can run many servers in one process.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// A histogram with fixed upper bounds.
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    /// Sum in millionths of the unit, to stay integral.
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.counts[i].fetch_add(1, Relaxed);
        }
        self.sum_micros.fetch_add((v * 1e6) as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_micros.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {count}");
    }
}

const LATENCY_BOUNDS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
];
const DELIVERY_BOUNDS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 3600.0,
];
const BATCH_BOUNDS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

pub struct Metrics {
    pub open_sockets: AtomicI64,
    pub messages_committed: AtomicU64,
    pub messages_duplicate: AtomicU64,
    pub commits: AtomicU64,
    pub frames_in: AtomicU64,
    pub frames_refused: AtomicU64,
    pub slow_consumer_closes: AtomicU64,
    pub ack_latency: Histogram,
    pub commit_batch: Histogram,
    pub commit_seconds: Histogram,
    /// Outbox rows not yet delivered.
    pub outbox_pending: AtomicI64,
    /// Undelivered rows that failed at least once.
    pub outbox_failing: AtomicI64,
    /// Age of the oldest undelivered row, in milliseconds (the outbox lag).
    pub outbox_oldest_pending_ms: AtomicI64,
    pub outbox_delivered: AtomicU64,
    pub outbox_failures: AtomicU64,
    /// Time from a row's commit to its delivery.
    pub outbox_delivery_seconds: Histogram,
    /// Message bus: 1 connected, 0 disconnected, -1 no bus (a single node).
    pub bus_connected: AtomicI64,
    /// Other nodes heard from within the presence TTL.
    pub bus_nodes: AtomicI64,
    pub bus_events_out: AtomicU64,
    pub bus_events_in: AtomicU64,
    /// Events not handed to the bus (its queue was full); other nodes resync.
    pub bus_events_dropped: AtomicU64,
    /// Times this node asked its clients to resume because events may be lost.
    pub bus_resyncs: AtomicU64,
    /// Time from an emergency message or SOS reaching the server to the guidance being
    /// committed (the citizen sees it with the ack).
    pub guidance_seconds: Histogram,
    /// Time from an escalation's creation to its first delivery to the hotline.
    pub escalation_delivery_seconds: Histogram,
    /// Open escalations nobody has acknowledged.
    pub escalations_unacknowledged: AtomicI64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            open_sockets: AtomicI64::new(0),
            messages_committed: AtomicU64::new(0),
            messages_duplicate: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            frames_in: AtomicU64::new(0),
            frames_refused: AtomicU64::new(0),
            slow_consumer_closes: AtomicU64::new(0),
            ack_latency: Histogram::new(LATENCY_BOUNDS),
            commit_batch: Histogram::new(BATCH_BOUNDS),
            commit_seconds: Histogram::new(LATENCY_BOUNDS),
            outbox_pending: AtomicI64::new(0),
            outbox_failing: AtomicI64::new(0),
            outbox_oldest_pending_ms: AtomicI64::new(0),
            outbox_delivered: AtomicU64::new(0),
            outbox_failures: AtomicU64::new(0),
            outbox_delivery_seconds: Histogram::new(DELIVERY_BOUNDS),
            bus_connected: AtomicI64::new(-1),
            bus_nodes: AtomicI64::new(0),
            bus_events_out: AtomicU64::new(0),
            bus_events_in: AtomicU64::new(0),
            bus_events_dropped: AtomicU64::new(0),
            bus_resyncs: AtomicU64::new(0),
            guidance_seconds: Histogram::new(LATENCY_BOUNDS),
            escalation_delivery_seconds: Histogram::new(DELIVERY_BOUNDS),
            escalations_unacknowledged: AtomicI64::new(0),
        }
    }
}

impl Metrics {
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let mut gauge = |name: &str, help: &str, kind: &str, v: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        };
        gauge(
            "lingshi_ws_open_sockets",
            "WebSocket connections currently open.",
            "gauge",
            self.open_sockets.load(Relaxed).to_string(),
        );
        gauge(
            "lingshi_messages_committed_total",
            "Messages durably committed.",
            "counter",
            self.messages_committed.load(Relaxed).to_string(),
        );
        gauge(
            "lingshi_messages_duplicate_total",
            "Sends answered from an earlier commit (idempotent resend).",
            "counter",
            self.messages_duplicate.load(Relaxed).to_string(),
        );
        gauge(
            "lingshi_commits_total",
            "Message transactions committed.",
            "counter",
            self.commits.load(Relaxed).to_string(),
        );
        gauge(
            "lingshi_ws_frames_total",
            "Client WebSocket frames received.",
            "counter",
            self.frames_in.load(Relaxed).to_string(),
        );
        gauge(
            "lingshi_ws_frames_refused_total",
            "Client frames answered with an error frame.",
            "counter",
            self.frames_refused.load(Relaxed).to_string(),
        );
        gauge(
            "lingshi_ws_slow_consumer_closes_total",
            "Sockets closed with 4008 because the client could not keep up.",
            "counter",
            self.slow_consumer_closes.load(Relaxed).to_string(),
        );
        gauge(
            "lingshi_outbox_pending",
            "Outbox rows not yet delivered.",
            "gauge",
            self.outbox_pending.load(Relaxed).to_string(),
        );
        gauge(
            "lingshi_outbox_failing",
            "Undelivered outbox rows that failed at least once.",
            "gauge",
            self.outbox_failing.load(Relaxed).to_string(),
        );
        gauge(
            "lingshi_outbox_lag_seconds",
            "Age of the oldest undelivered outbox row.",
            "gauge",
            (self.outbox_oldest_pending_ms.load(Relaxed) as f64 / 1000.0).to_string(),
        );
        gauge(
            "lingshi_outbox_delivered_total",
            "Outbox rows delivered.",
            "counter",
            self.outbox_delivered.load(Relaxed).to_string(),
        );
        gauge(
            "lingshi_outbox_failures_total",
            "Failed outbox delivery attempts.",
            "counter",
            self.outbox_failures.load(Relaxed).to_string(),
        );
        gauge(
            "lingshi_bus_connected",
            "Message bus connection: 1 connected, 0 disconnected, -1 single node (no bus).",
            "gauge",
            self.bus_connected.load(Relaxed).to_string(),
        );
        gauge(
            "lingshi_bus_nodes",
            "Other nodes heard from on the bus within the presence TTL.",
            "gauge",
            self.bus_nodes.load(Relaxed).to_string(),
        );
        gauge(
            "lingshi_bus_events_out_total",
            "Events published to other nodes.",
            "counter",
            self.bus_events_out.load(Relaxed).to_string(),
        );
        gauge(
            "lingshi_bus_events_in_total",
            "Events received from other nodes.",
            "counter",
            self.bus_events_in.load(Relaxed).to_string(),
        );
        gauge(
            "lingshi_bus_events_dropped_total",
            "Events not handed to the bus because its queue was full.",
            "counter",
            self.bus_events_dropped.load(Relaxed).to_string(),
        );
        gauge(
            "lingshi_bus_resyncs_total",
            "Times this node closed its sockets (1012) because events from other nodes may be lost.",
            "counter",
            self.bus_resyncs.load(Relaxed).to_string(),
        );
        gauge(
            "lingshi_escalations_unacknowledged",
            "Open escalations nobody has acknowledged.",
            "gauge",
            self.escalations_unacknowledged.load(Relaxed).to_string(),
        );
        self.guidance_seconds.render(
            &mut out,
            "lingshi_emergency_guidance_seconds",
            "Time from an emergency message or SOS to the citizen's guidance being committed.",
        );
        self.escalation_delivery_seconds.render(
            &mut out,
            "lingshi_escalation_delivery_seconds",
            "Time from an escalation's creation to its first delivery to the hotline.",
        );
        self.outbox_delivery_seconds.render(
            &mut out,
            "lingshi_outbox_delivery_seconds",
            "Time from an outbox row's commit to its delivery.",
        );
        self.ack_latency.render(
            &mut out,
            "lingshi_ack_latency_seconds",
            "Time from a send reaching the writer queue to its durable commit.",
        );
        self.commit_batch.render(
            &mut out,
            "lingshi_commit_batch_size",
            "Messages per committed transaction.",
        );
        self.commit_seconds.render(
            &mut out,
            "lingshi_commit_seconds",
            "Duration of one message transaction including fsync.",
        );
        out
    }
}
