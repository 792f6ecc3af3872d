//! The accept loop: HTTP/1.1 connections with limits that keep one client from taking
//! the server down by opening connections and saying nothing. A connection must send
//! its request headers within `http_header_timeout_secs` (this also closes idle
//! keep-alive connections and slowloris clients trickling headers); each address may
//! hold at most `connections_per_address` connections; the process keeps a reserve of
//! file descriptors below its open-file limit so `/healthz`, sign-ins and the database
//! keep working. Request bodies and handlers have their own time limits (in the router).
//! WebSocket upgrades leave this loop's limits behind and are governed by the socket
//! protocol's hello timeout and heartbeat.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// Limits of the accept loop.
#[derive(Clone, Debug)]
pub struct ConnectionLimits {
    pub header_timeout: Duration,
    pub per_address: usize,
    /// Most connections at once (all addresses).
    pub total: usize,
}

/// File descriptors kept free for the database, the index, uploads and logs.
const FD_RESERVE: u64 = 256;

/// The most connections this process can hold without running out of file
/// descriptors for everything else.
pub fn connection_budget() -> usize {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we pass and reads nothing else.
        let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
        if ok && lim.rlim_cur != libc::RLIM_INFINITY {
            return lim.rlim_cur.saturating_sub(FD_RESERVE).max(16) as usize;
        }
    }
    100_000
}

/// Counts open connections per address and in all.
#[derive(Default)]
struct Counts {
    by_address: HashMap<IpAddr, usize>,
    total: usize,
}

/// Releases a connection's slot however its task ends.
struct Slot {
    counts: Arc<Mutex<Counts>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.total -= 1;
        if let Some(n) = c.by_address.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.by_address.remove(&self.ip);
            }
        }
    }
}

fn take_slot(counts: &Arc<Mutex<Counts>>, ip: IpAddr, limits: &ConnectionLimits) -> Option<Slot> {
    let mut c = counts.lock().unwrap_or_else(|p| p.into_inner());
    let mine = c.by_address.get(&ip).copied().unwrap_or(0);
    if c.total >= limits.total || mine >= limits.per_address {
        return None;
    }
    c.total += 1;
    *c.by_address.entry(ip).or_default() += 1;
    Some(Slot {
        counts: counts.clone(),
        ip,
    })
}

/// Serve `app` on `listener` until `stop`, then let open connections finish their
/// current request (they are told to close) and return once they have.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    stop: CancellationToken,
) {
    let counts: Arc<Mutex<Counts>> = Arc::default();
    let tracker = TaskTracker::new();
    let mut refused_logged = false;
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors or similar: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(slot) = take_slot(&counts, peer.ip(), &limits) else {
            // Closing at once costs the client nothing it is owed and keeps the slot
            // for others. Logged once per burst.
            if !refused_logged {
                tracing::warn!(address = %peer.ip(), "connection limit reached; refusing connections");
                refused_logged = true;
            }
            drop(stream);
            continue;
        };
        refused_logged = false;
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let stop = stop.clone();
        let header_timeout = limits.header_timeout;
        tracker.spawn(async move {
            let _slot = slot;
            serve_connection(stream, peer, app, header_timeout, stop).await;
        });
    }
    tracker.close();
    tracker.wait().await;
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    app: Router,
    header_timeout: Duration,
    stop: CancellationToken,
) {
    let service = TowerToHyperService::new(tower::service_fn(
        move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(req.map(axum::body::Body::new))
        },
    ));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        }
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
