//! `GET /v1/events/stream?from_height=H`: a WebSocket of events, stored ones first, then live.
//!
//! Each text message is one event as `GET /v1/events` lists them (`{"height", "index",
//! "tx_hash", "event"}`), in chain order. The stream has no seam: it keeps one cursor into the
//! block store and, each time a block is committed, sends what the store holds past the cursor.
//! Blocks are stored whole before they are announced, so nothing is skipped and nothing sent
//! twice; a slow reader slows only its own cursor. To resume after a disconnect, reconnect with
//! `from_height` = the last event's height and skip events up to its `index`.
//!
//! If the node fails to read its store, it sends one `{"error": {...}}` message and closes.

use std::sync::Arc;

use axum::{
    extract::{
        Query, State, WebSocketUpgrade,
        rejection::QueryRejection,
        ws::{CloseFrame, Message, WebSocket, close_code, rejection::WebSocketUpgradeRejection},
    },
    response::Response,
};
use kumo_blockstore::EventCursor;

use crate::{
    backend::NodeBackend,
    error::ApiError,
    routes::{Api, ApiState},
    types::{ErrorCode, StreamQuery},
};

/// Events read from the store at a time.
const PAGE: usize = 256;

pub(crate) async fn events_stream<B: NodeBackend>(
    State(api): ApiState<B>,
    query: Result<Query<StreamQuery>, QueryRejection>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query?;
    let ws = ws.map_err(|r| {
        ApiError::bad_request(format!(
            "{}: /v1/events/stream is a WebSocket; for pages of events use GET /v1/events",
            r.body_text()
        ))
    })?;
    let from = match q.from_height {
        Some(h) => h,
        None => *api.backend.committed().borrow() + 1,
    };
    Ok(ws.on_upgrade(move |socket| follow(api, socket, from)))
}

async fn follow<B: NodeBackend>(api: Arc<Api<B>>, mut socket: WebSocket, from: u64) {
    let mut heights = api.backend.committed();
    let mut cursor = EventCursor::at_height(from);
    loop {
        heights.borrow_and_update();
        // Everything stored past the cursor; blocks committed meanwhile are included too.
        loop {
            let backend = api.backend.clone();
            let at = cursor;
            let page = match tokio::task::spawn_blocking(move || backend.blocks().events(at, PAGE))
                .await
            {
                Ok(Ok(page)) => page,
                Ok(Err(e)) => return fail(socket, ApiError::from(e)).await,
                Err(e) => return fail(socket, ApiError::from(e)).await,
            };
            for e in &page {
                let text = serde_json::to_string(e).expect("events serialize");
                if socket.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
                cursor = e.next_cursor();
            }
            if page.len() < PAGE {
                break;
            }
        }
        tokio::select! {
            changed = heights.changed() => {
                if changed.is_err() {
                    let _ = socket.send(Message::Close(Some(CloseFrame {
                        code: close_code::AWAY,
                        reason: "the node is shutting down".into(),
                    }))).await;
                    return;
                }
            }
            msg = socket.recv() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                // Pings are answered by the socket itself; anything else is ignored.
                Some(Ok(_)) => {}
            },
        }
    }
}

async fn fail(mut socket: WebSocket, e: ApiError) {
    let body = serde_json::to_string(&e.body()).expect("errors serialize");
    let _ = socket.send(Message::Text(body.into())).await;
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: if e.code == ErrorCode::Unavailable {
                close_code::AGAIN
            } else {
                close_code::ERROR
            },
            reason: e.code.as_str().into(),
        })))
        .await;
}
