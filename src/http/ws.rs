//! One WebSocket connection: `hello`, the `welcome` snapshot and resume replay, then a
//! single task that reads client frames, writes queued hub frames, and pings. Every
//! frame is parsed here and handed to a domain service; nothing here decides a rule.
//!
//! One task per socket (no reader/writer split) keeps an idle connection to its socket
//! buffers, a small future and one [`Conn`] entry in the hub.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures_util::SinkExt;

use crate::app::AppState;
use crate::domain::conversations::SendInput;
use crate::domain::escalations::SosInput;
use crate::domain::types::{Channel, GeoPoint};
use crate::domain::Principal;
use crate::error::AppError;
use crate::hub::{topics_for, Conn};
use crate::wire::{
    client_msg_id_of, parse_client_frame, AckView, ClientFrame, ConversationView, EscalationView,
    MessageView, ServerFrame, UserView,
};

/// Close codes of the contract.
pub const CLOSE_UNAUTHORIZED: u16 = 4401;
pub const CLOSE_TOO_SLOW: u16 = 4008;
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Service restart: live events may have been lost between nodes; reconnect and
/// `resume`.
pub const CLOSE_RESYNC: u16 = 1012;

/// Socket read buffer: small, since most sockets sit idle; it grows for a large frame
/// while that frame is in flight.
const READ_BUFFER: usize = 512;
/// Most conversations a `resume` may name.
const RESUME_MAX: usize = 200;
/// Messages read per replay query.
const REPLAY_PAGE: i64 = 200;

pub async fn upgrade(ws: WebSocketUpgrade, State(state): State<AppState>) -> Response {
    if state.hub.shutting_down() {
        return AppError::Unavailable("the server is shutting down".into()).into_response();
    }
    let frame_max = state.config.limits.frame_max_bytes;
    // Frames up to 16x the limit are read and refused with an error frame (the socket
    // stays open); anything larger is a protocol error that ends the connection.
    let hard_max = frame_max.saturating_mul(16);
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(4 * 1024 * 1024)
        .max_message_size(hard_max)
        .max_frame_size(hard_max)
        .on_failed_upgrade(|e| tracing::debug!(error = %e, "websocket upgrade failed"))
        .on_upgrade(move |socket| serve(socket, state))
}

async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        })))
        .await;
}

/// Wait for `hello` and authenticate it.
async fn handshake(
    socket: &mut WebSocket,
    state: &AppState,
) -> Option<(Principal, String, HashMap<String, i64>)> {
    let timeout = Duration::from_secs(state.config.limits.hello_timeout_secs);
    let text = match tokio::time::timeout(timeout, socket.recv()).await {
        Ok(Some(Ok(Message::Text(t)))) => t,
        Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return None,
        Ok(Some(Ok(_))) => {
            close(socket, CLOSE_UNAUTHORIZED, "the first frame must be hello").await;
            return None;
        }
        Err(_) => {
            close(socket, CLOSE_UNAUTHORIZED, "no hello within the time limit").await;
            return None;
        }
    };
    let (token, resume) = match parse_client_frame(&text) {
        Ok(ClientFrame::Hello { token, resume }) => (token, resume),
        _ => {
            close(socket, CLOSE_UNAUTHORIZED, "the first frame must be hello").await;
            return None;
        }
    };
    match state.domain.authenticate(&token).await {
        Ok(Some((p, session))) => Some((p, session, resume)),
        Ok(None) => {
            close(
                socket,
                CLOSE_UNAUTHORIZED,
                "invalid, expired or revoked token",
            )
            .await;
            None
        }
        Err(e) => {
            e.log();
            close(socket, 1011, "internal error").await;
            None
        }
    }
}

/// Unsubscribes and counts the socket down however the task ends.
struct Registration<'a> {
    state: &'a AppState,
    conn: Arc<Conn>,
    /// The topics are derived from the principal again at the end rather than kept
    /// for the socket's whole life.
    principal: &'a Principal,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.state
            .hub
            .unsubscribe(&self.conn, &topics_for(self.principal));
        if let Some(a) = self.principal.staff() {
            self.state.domain.presence.push(a.id);
        }
    }
}

/// Counts every accepted socket, said hello or not, for the open-sockets gauge.
struct Counted<'a>(&'a AppState);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.metrics.open_sockets.fetch_sub(1, Relaxed);
    }
}

async fn serve(mut socket: WebSocket, state: AppState) {
    state.metrics.open_sockets.fetch_add(1, Relaxed);
    let _counted = Counted(&state);
    // The handshake, snapshot and frame handling are boxed: their futures are large and
    // short-lived, and inlining them would make every idle socket's task that large.
    let Some((principal, session, resume)) = Box::pin(handshake(&mut socket, &state)).await else {
        return;
    };
    // Subscribe first: whatever is committed from now on is queued for this socket,
    // so nothing falls between the snapshot below and live delivery.
    let conn = state
        .hub
        .subscribe(&session, &principal, &topics_for(&principal));
    let reg = Registration {
        state: &state,
        conn,
        principal: &principal,
    };
    if let Some(a) = principal.staff() {
        state.domain.presence.push(a.id);
    }
    if let Err(e) = Box::pin(welcome_and_replay(&mut socket, &state, &principal, resume)).await {
        e.log();
        close(&mut socket, 1011, "internal error").await;
    } else {
        run(&mut socket, &state, &principal, &reg.conn).await;
    }
}

async fn welcome_and_replay(
    socket: &mut WebSocket,
    state: &AppState,
    p: &Principal,
    resume: HashMap<String, i64>,
) -> Result<(), AppError> {
    let convs = state.domain.welcome_snapshot(p).await?;
    let welcome = ServerFrame::Welcome {
        user: UserView::of(p),
        conversations: convs
            .iter()
            .map(|c| ConversationView::for_principal(c, p))
            .collect(),
    };
    if socket.send(Message::Text(welcome.text())).await.is_err() {
        return Ok(());
    }
    let mut resume: Vec<(String, i64)> = resume.into_iter().collect();
    resume.sort();
    if resume.len() > RESUME_MAX {
        let e = AppError::invalid(format!("resume names more than {RESUME_MAX} conversations"));
        let _ = socket
            .send(Message::Text(ServerFrame::error(&e, None)))
            .await;
        resume.truncate(RESUME_MAX);
    }
    for (cid, last_seq) in resume {
        let conv = match state.domain.conversation_for(p, &cid).await {
            Ok(c) => c,
            Err(e @ (AppError::NotFound(_) | AppError::Forbidden(_))) => {
                let _ = socket
                    .send(Message::Text(ServerFrame::error(&e, None)))
                    .await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut after = last_seq.max(0);
        while after < conv.last_seq {
            let page = state
                .domain
                .history(p, &conv, Some(after), None, REPLAY_PAGE)
                .await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for m in &page {
                let frame = ServerFrame::Message {
                    message: MessageView::for_principal(m, p),
                };
                if socket.send(Message::Text(frame.text())).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}

/// Token bucket for client frames.
struct FrameBudget {
    tokens: f64,
    per_sec: f64,
    at: Instant,
}

impl FrameBudget {
    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.per_sec)
            .min(self.per_sec);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

async fn run(socket: &mut WebSocket, state: &AppState, p: &Principal, conn: &Conn) {
    let limits = &state.config.limits;
    let mut budget = FrameBudget {
        tokens: limits.frames_per_second as f64,
        per_sec: limits.frames_per_second as f64,
        at: Instant::now(),
    };
    loop {
        tokio::select! {
            biased;
            _ = conn.woken() => {
                if conn.overflowed() {
                    state.metrics.slow_consumer_closes.fetch_add(1, Relaxed);
                    tracing::info!(principal = %p.id(), "client too slow; closing with 4008");
                    close(socket, CLOSE_TOO_SLOW, "too slow: reconnect and resume").await;
                    return;
                }
                if conn.closing() {
                    if state.hub.shutting_down() {
                        close(socket, CLOSE_GOING_AWAY, "server shutting down").await;
                    } else {
                        close(socket, CLOSE_UNAUTHORIZED, "session revoked").await;
                    }
                    return;
                }
                if conn.must_resync() {
                    tracing::info!(principal = %p.id(), "events from another node may be lost; asking the client to resume");
                    close(socket, CLOSE_RESYNC, "reconnect and resume").await;
                    return;
                }
                if conn.idle() {
                    tracing::debug!(principal = %p.id(), "socket silent too long; closing");
                    close(socket, CLOSE_GOING_AWAY, "idle timeout").await;
                    return;
                }
                // Everything queued goes out in one write: frames are buffered, then
                // flushed once.
                for frame in conn.drain() {
                    if socket.feed(Message::Text(frame)).await.is_err() {
                        return;
                    }
                }
                if conn.take_ping() && socket.feed(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
                if socket.flush().await.is_err() {
                    return;
                }
            }
            msg = socket.recv() => {
                let Some(Ok(msg)) = msg else { return };
                conn.touch(&state.hub);
                match msg {
                    Message::Text(text) => {
                        let reply = Box::pin(handle_text(state, p, &mut budget, &text)).await;
                        if let Some(reply) = reply {
                            if socket.send(Message::Text(reply)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Message::Binary(_) => {
                        state.metrics.frames_refused.fetch_add(1, Relaxed);
                        let e = AppError::invalid("binary frames are not supported; send JSON text frames");
                        if socket.send(Message::Text(ServerFrame::error(&e, None))).await.is_err() {
                            return;
                        }
                    }
                    Message::Close(_) => return,
                    Message::Ping(_) | Message::Pong(_) => {}
                }
            }
        }
    }
}

/// Handle one client text frame; returns the direct reply, if any.
async fn handle_text(
    state: &AppState,
    p: &Principal,
    budget: &mut FrameBudget,
    text: &str,
) -> Option<Utf8Bytes> {
    state.metrics.frames_in.fetch_add(1, Relaxed);
    let refuse = |e: AppError, cmid: Option<&str>| {
        state.metrics.frames_refused.fetch_add(1, Relaxed);
        e.log();
        Some(ServerFrame::error(&e, cmid))
    };
    if !budget.take() {
        let e = AppError::RateLimited {
            message: format!(
                "more than {} frames per second; slow down",
                state.config.limits.frames_per_second
            ),
            retry_after_secs: 1,
        };
        return refuse(e, client_msg_id_of(text).as_deref());
    }
    if text.len() > state.config.limits.frame_max_bytes {
        let e = AppError::TooLarge(format!(
            "frame of {} bytes is over the {} byte limit",
            text.len(),
            state.config.limits.frame_max_bytes
        ));
        return refuse(e, None);
    }
    let frame = match parse_client_frame(text) {
        Ok(f) => f,
        Err(e) => return refuse(e, client_msg_id_of(text).as_deref()),
    };
    let d = &state.domain;
    let done = |r: Result<(), AppError>| match r {
        Ok(()) => None,
        Err(e) => refuse(e, None),
    };
    match frame {
        ClientFrame::Ping => Some(ServerFrame::pong()),
        ClientFrame::Hello { .. } => refuse(AppError::invalid("already authenticated"), None),
        ClientFrame::Presence { status } => done(d.set_presence(p, &status).await.map(|_| ())),
        ClientFrame::Send(s) => {
            let cmid = s.client_msg_id.clone();
            let input = SendInput {
                client_msg_id: s.client_msg_id,
                conversation_id: s.conversation_id,
                kind: s.kind,
                body: s.body,
                attachment_ids: s.attachment_ids,
                channel: None,
            };
            match d.send(p, input).await {
                Ok(o) => AckView::of(&o).map(|a| ServerFrame::Ack(a).text()),
                Err(e) => refuse(e, Some(&cmid)),
            }
        }
        ClientFrame::Typing {
            conversation_id,
            active,
        } => done(d.typing(p, &conversation_id, active).await),
        ClientFrame::Viewing {
            conversation_id,
            active,
        } => done(d.viewing(p, &conversation_id, active).await),
        ClientFrame::Read {
            conversation_id,
            seq,
        } => done(d.mark_read(p, &conversation_id, seq).await),
        ClientFrame::Sos { note, location } => {
            let location = match location
                .map(|l| GeoPoint::parse(l.lat, l.lon, l.accuracy_m))
                .transpose()
            {
                Ok(l) => l,
                Err(e) => return refuse(e, None),
            };
            let input = SosInput {
                conversation_id: None,
                note,
                location,
            };
            match d.sos(p, input, Channel::App).await {
                Ok(o) => match &o.escalation {
                    Some(e) => Some(
                        ServerFrame::SosAck {
                            escalation: EscalationView::from(e),
                            guidance: o.guidance.as_deref().unwrap_or_default(),
                        }
                        .text(),
                    ),
                    None => refuse(
                        AppError::Internal(anyhow::anyhow!("SOS without an escalation")),
                        None,
                    ),
                },
                Err(e) => refuse(e, None),
            }
        }
        ClientFrame::Location {
            lat,
            lon,
            accuracy_m,
        } => done(match GeoPoint::parse(lat, lon, accuracy_m) {
            Ok(at) => d.set_location(p, at).await,
            Err(e) => Err(e),
        }),
    }
}
