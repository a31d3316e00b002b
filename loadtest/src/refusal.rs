//! What the server says when it turns a request away early (docs/protocol.md): an HTTP status
//! with `Retry-After` and a JSON `{code, message}` body (`429 rate_limited`, `503 server_busy`,
//! on the API and on the call WebSocket's upgrade), or, once the socket is open, an `error`
//! message whose text says how many seconds to wait ("try again in 2 s"). Pure parsing.

use std::time::Duration;

/// One refusal, from an HTTP answer or from an `error` message on the call socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status; `None` for an `error` message on an open socket.
    pub http_status: Option<u16>,
    /// The `code` of the body or message (`server_busy`...); empty when the body had none.
    pub code: String,
    /// How long the server asked us to wait, if it said.
    pub retry_after: Option<Duration>,
}

impl Refusal {
    /// An HTTP refusal: its status, its `Retry-After` header and its body.
    pub fn of_http(status: u16, retry_after: Option<&str>, body: &[u8]) -> Refusal {
        let code = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|body| body.get("code")?.as_str().map(str::to_owned))
            .unwrap_or_default();
        Refusal { http_status: Some(status), code, retry_after: retry_after.and_then(parse_retry_after) }
    }

    /// An `error` message on the call socket.
    pub fn of_message(code: &str, message: &str) -> Refusal {
        Refusal { http_status: None, code: code.to_owned(), retry_after: retry_hint(message) }
    }

    /// Whether waiting and trying again may succeed: the server is busy, or we went too fast.
    /// `room_full`, `not_a_member` and the like are answers, not overload.
    pub fn is_retryable(&self) -> bool {
        matches!(self.code.as_str(), "server_busy" | "rate_limited" | "unavailable" | "too_many_connections")
            || matches!(self.http_status, Some(429 | 502 | 503 | 504))
    }

    /// A short, stable name for counting: `503 server_busy` (HTTP) or `server_busy` (message).
    pub fn kind(&self) -> String {
        let code = if self.code.is_empty() { "(no code)" } else { &self.code };
        match self.http_status {
            Some(status) => format!("{status} {code}"),
            None => code.to_owned(),
        }
    }
}

/// `Retry-After` as delta-seconds (RFC 9110 §10.2.3). An HTTP-date, which this server never
/// sends, is not understood: `None`, and the caller backs off on its own.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // More digits than a u64 holds: as long as anyone would wait.
    Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX).min(24 * 3600)))
}

/// The wait an `error` message's text gives: "... try again in 2 s".
pub fn retry_hint(message: &str) -> Option<Duration> {
    let rest = &message[message.find("try again in ")? + "try again in ".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    if !rest[digits.len()..].trim_start().starts_with('s') {
        return None;
    }
    parse_retry_after(&digits)
}

#[cfg(test)]
mod tests;
