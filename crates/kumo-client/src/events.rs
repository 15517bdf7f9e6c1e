//! The reconnecting event stream over `GET /v1/events/stream`.
//!
//! The stream remembers the position (height, index) of the last event it delivered. When the
//! connection drops it waits (100 ms, doubling up to 5 s, reset by the next event), reconnects
//! with `from_height` = that event's height, and skips what it already delivered: the consumer
//! sees every event once, in order.

use std::{pin::Pin, time::Duration};

use futures_util::{Stream, StreamExt, stream};
use kumo_api::types::ErrorBody;
use kumo_blockstore::StoredEvent;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};

use crate::ClientError;

/// Events in chain order; `Err` items report a dropped connection (the stream reconnects).
pub type EventStream = Pin<Box<dyn Stream<Item = Result<StoredEvent, ClientError>> + Send>>;

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

struct Follow {
    /// `ws://host:port/prefix/v1/events/stream`.
    url: String,
    ws: Option<Ws>,
    /// Where to reconnect from.
    from_height: u64,
    /// Position of the last event delivered.
    last: Option<(u64, u32)>,
    /// Wait before the next connection attempt, if the last one failed or dropped.
    backoff: Option<Duration>,
    next_backoff: Duration,
}

impl Follow {
    fn dropped(&mut self) {
        self.ws = None;
        self.backoff = Some(self.next_backoff);
        self.next_backoff = (self.next_backoff * 2).min(MAX_BACKOFF);
    }

    /// The next item: an event, or why the connection dropped (then it reconnects).
    async fn next(&mut self) -> Result<StoredEvent, ClientError> {
        loop {
            let Some(ws) = self.ws.as_mut() else {
                if let Some(wait) = self.backoff.take() {
                    tokio::time::sleep(wait).await;
                }
                let url = format!("{}?from_height={}", self.url, self.from_height);
                match tokio_tungstenite::connect_async(&url).await {
                    Ok((ws, _)) => self.ws = Some(ws),
                    Err(e) => {
                        self.dropped();
                        return Err(ClientError::Stream(format!(
                            "cannot connect to {url}: {e}; retrying in {:?}",
                            self.backoff.unwrap_or_default()
                        )));
                    }
                }
                continue;
            };
            let text = match ws.next().await {
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(Message::Close(_))) | None => {
                    self.dropped();
                    return Err(ClientError::Stream(
                        "the node closed the connection; reconnecting".into(),
                    ));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    self.dropped();
                    return Err(ClientError::Stream(format!(
                        "connection lost ({e}); reconnecting"
                    )));
                }
            };
            let event = match serde_json::from_str::<StoredEvent>(&text) {
                Ok(e) => e,
                Err(decode) => {
                    self.dropped();
                    return Err(match serde_json::from_str::<ErrorBody>(&text) {
                        Ok(e) => ClientError::Api {
                            status: e.error.code.status(),
                            code: e.error.code,
                            message: e.error.message,
                            reason: e.error.reason,
                        },
                        Err(_) => ClientError::Decode {
                            url: self.url.clone(),
                            error: format!("event stream message: {decode}"),
                        },
                    });
                }
            };
            let at = (event.height, event.index);
            if self.last.is_some_and(|last| at <= last) {
                // Already delivered before a reconnect.
                continue;
            }
            self.last = Some(at);
            self.from_height = event.height;
            self.next_backoff = FIRST_BACKOFF;
            return Ok(event);
        }
    }
}

/// The stream of `base`'s events from `from_height` on.
pub(crate) fn stream(base: &str, from_height: u64) -> EventStream {
    let url = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}/v1/events/stream")
    } else {
        format!(
            "ws://{}/v1/events/stream",
            base.strip_prefix("http://").unwrap_or(base)
        )
    };
    let follow = Follow {
        url,
        ws: None,
        from_height,
        last: None,
        backoff: None,
        next_backoff: FIRST_BACKOFF,
    };
    Box::pin(stream::unfold(follow, |mut f| async move {
        let item = f.next().await;
        Some((item, f))
    }))
}
