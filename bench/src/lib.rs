//! hookcast-load: a load generator for Server-Sent Events servers (hookcast, nginx+nchan, any other), loopback only.
//!
//! Many subscribers follow topics through a URL template while publishers POST
//! webhooks whose bodies carry a per-topic sequence number and a send timestamp;
//! the subscribers parse the event streams incrementally and count deliveries,
//! losses, reorders and publish-to-receive latency. The server's RSS and CPU time
//! are sampled from /proc around the phases, and one JSON [`Summary`] comes out.
//!
//! # Layout
//! - [`args`]: the command line and [`Config`].
//! - [`run`](mod@run): the phases, and child processes when subscribers need several.
//! - [`subscribers`]: subscriber connections and seq tracking.
//! - [`publishers`]: webhook connections.
//! - [`sse`]: the incremental event-stream parser.
//! - [`http`]: loopback targets, response heads, chunked bodies.
//! - [`template`]: `{seq}`, `{ts_ns}`, `{topic}` templates.
//! - [`procstat`]: RSS and CPU of process trees from /proc.
//! - [`summary`]: the JSON output and how child results merge.

use std::fmt;

pub mod args;
pub mod http;
pub mod procstat;
pub mod publishers;
pub mod run;
pub mod sse;
pub mod subscribers;
pub mod summary;
pub mod template;

pub use args::Config;
pub use run::run;
pub use summary::Summary;

/// Why a run could not start or finish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Bad arguments (exit code 2).
    Usage(String),
    /// A target host that is not loopback (exit code 2).
    NotLoopback(String),
    /// Anything that went wrong while running (exit code 1).
    Runtime(String),
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) | Error::NotLoopback(_) => 2,
            Error::Runtime(_) => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) | Error::Runtime(m) => f.write_str(m),
            Error::NotLoopback(h) => write!(
                f,
                "refusing target host `{h}`: hookcast-load only sends traffic to loopback \
                 (127.0.0.0/8, [::1], localhost)"
            ),
        }
    }
}

impl std::error::Error for Error {}
