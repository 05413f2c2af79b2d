//! Accepting connections when the process is out of file descriptors.
//!
//! At the descriptor limit the kernel still completes TCP handshakes, but
//! `accept` fails (EMFILE), so the client would wait on a connection nobody
//! serves. An [`Acceptor`] keeps one spare descriptor: out of descriptors, it
//! gives the spare back, accepts the waiting connection, closes it at once (the
//! client sees the connection end and can retry, as an `EventSource` does), and
//! takes the spare again. It warns once per episode, when it starts.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// EMFILE and ENFILE (the same numbers on Linux and macOS).
const EMFILE: i32 = 24;
const ENFILE: i32 = 23;

/// Accepts on one listener, shedding what cannot be served.
#[derive(Debug)]
pub struct Acceptor {
    what: &'static str,
    spare: Option<std::fs::File>,
    /// Connections closed in the current episode; `None` outside one.
    shed: Option<u64>,
}

impl Acceptor {
    /// `what` names the listener in logs.
    pub fn new(what: &'static str) -> Acceptor {
        Acceptor {
            what,
            spare: take_spare(),
            shed: None,
        }
    }

    /// The next connection that can be served.
    pub async fn accept(&mut self, listener: &TcpListener) -> (TcpStream, SocketAddr) {
        loop {
            match listener.accept().await {
                Ok(conn) => {
                    if let Some(shed) = self.shed.take() {
                        // The episode's one warning was its start.
                        tracing::debug!(
                            listener = self.what,
                            closed = shed,
                            "file descriptors available again; accepting connections"
                        );
                    }
                    if self.spare.is_none() {
                        self.spare = take_spare();
                    }
                    return conn;
                }
                Err(e) if matches!(e.raw_os_error(), Some(EMFILE | ENFILE)) => {
                    self.shed_one(listener, &e).await;
                }
                Err(e) => {
                    // Rare (ENOBUFS, ENOMEM): wait rather than spin.
                    tracing::error!(listener = self.what, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn shed_one(&mut self, listener: &TcpListener, e: &io::Error) {
        if self.shed.is_none() {
            tracing::warn!(
                listener = self.what,
                error = %e,
                "out of file descriptors; closing new connections at once until some end"
            );
            self.shed = Some(0);
        }
        // Without the spare (another task took the descriptor), wait a little
        // instead of spinning; the connection waits in the backlog meanwhile.
        if self.spare.take().is_none() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            self.spare = take_spare();
            return;
        }
        // A connection is waiting (accept failed on it), so this returns at once.
        if let Ok(Ok((stream, _))) =
            tokio::time::timeout(Duration::from_millis(10), listener.accept()).await
        {
            drop(stream);
            if let Some(n) = &mut self.shed {
                *n += 1;
            }
        }
        self.spare = take_spare();
    }
}

fn take_spare() -> Option<std::fs::File> {
    std::fs::File::open("/dev/null").ok()
}
