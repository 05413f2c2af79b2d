//! Per-connection facts that the accept loop hands to each request of a
//! connection. A leaf: it imports nothing from the crate, so every layer may use it
//! (README "Architecture").

use std::sync::Arc;

use tokio::sync::Notify;

/// Handed to each request of a connection: notified when a subscriber on it
/// overflows its queue, so that the connection is dropped even if the client
/// stopped reading (then hyper no longer polls the body to see the close).
#[derive(Debug, Clone)]
pub struct ConnectionCut(pub Arc<Notify>);

/// The client's address, handed to each request of a connection (for `X-Forwarded-For`).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::SocketAddr);
