//! Reload (README, "Operate"): on SIGHUP, or when the config file or a `secret_file`
//! changes, the file is read and checked again; a valid config replaces what the
//! handlers use, with no connection dropped.
//!
//! Changes are found by polling contents, not inodes or events: Kubernetes updates a
//! mounted ConfigMap or Secret by swapping a `..data` symlink in the directory,
//! which reading the path through the link always sees.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::app::{App, Live};
use crate::broker;
use crate::config::{self, Config};

/// How often the files are read to look for a change (README, "Operate": once a
/// second, so an edit or a Kubernetes update is seen without inotify).
pub const POLL_EVERY: Duration = Duration::from_secs(1);

/// Where the running config came from, so it can be read again.
#[derive(Debug, Clone)]
pub struct Source {
    path: PathBuf,
    /// Notified on SIGHUP (or by a test).
    trigger: Arc<Notify>,
    /// The files' fingerprint when `config` was loaded: a change made before the
    /// watcher starts is still a change.
    loaded: u64,
    /// Applied again at every reload, so they keep winning over the file.
    overrides: config::Overrides,
}

impl Source {
    /// To be made right after `config` was loaded from `path`.
    pub fn new(path: PathBuf, trigger: Arc<Notify>, config: &Config) -> Self {
        let loaded = fingerprint(&path, &config.secret_files).unwrap_or_default();
        Source {
            path,
            trigger,
            loaded,
            overrides: config::Overrides::default(),
        }
    }

    /// The command line's and environment's settings that `config` was loaded with.
    #[must_use]
    pub fn with_overrides(mut self, overrides: config::Overrides) -> Self {
        self.overrides = overrides;
        self
    }

    /// What to notify for a reload (SIGHUP).
    pub fn trigger(&self) -> Arc<Notify> {
        self.trigger.clone()
    }
}

/// Reloads on `source.trigger` and whenever the config file or a secret file
/// changes. Runs until dropped.
pub async fn watch(live: Arc<Live>, source: Source) {
    let mut seen = source.loaded;
    // Set while the files cannot be read, so that an episode logs once.
    let mut unreadable = false;
    let mut tick = tokio::time::interval(POLL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let why = tokio::select! {
            _ = tick.tick() => {
                let now = match fingerprint(&source.path, &live.load().config.secret_files) {
                    Ok(now) => now,
                    Err(e) => {
                        // Out of file descriptors, say: nothing is known to have
                        // changed, so nothing is reloaded.
                        if !unreadable {
                            tracing::warn!(
                                error = %e,
                                "cannot read the configuration files; treated as unchanged until they can be read"
                            );
                        }
                        unreadable = true;
                        continue;
                    }
                };
                unreadable = false;
                if now == seen {
                    continue;
                }
                "a watched file changed"
            }
            () = source.trigger.notified() => "SIGHUP",
        };
        reload(&live, &source.path, &source.overrides, why);
        // Taken after the reload, whose config may name other secret files.
        if let Ok(now) = fingerprint(&source.path, &live.load().config.secret_files) {
            seen = now;
        }
    }
}

/// A hash of the config file's and the secret files' contents. A missing file
/// counts as a state of its own; any other read error (no file descriptor left,
/// say) says nothing about the contents, and is returned.
fn fingerprint(path: &Path, secret_files: &[PathBuf]) -> std::io::Result<u64> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for p in std::iter::once(path).chain(secret_files.iter().map(PathBuf::as_path)) {
        match std::fs::read(p) {
            Ok(bytes) => Some(bytes).hash(&mut h),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None::<Vec<u8>>.hash(&mut h),
            Err(e) => return Err(e),
        }
    }
    Ok(h.finish())
}

/// Reads and checks the file; a valid config replaces the current one, less the
/// settings that need a restart; an invalid one is logged and changes nothing.
pub fn reload(live: &Live, path: &Path, overrides: &config::Overrides, why: &'static str) -> bool {
    let old = live.load();
    let metrics = old.metrics();
    let mut new = match config::load_with(path, overrides) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(
                reason = why,
                errors = %e,
                "configuration reload failed; the running configuration stays"
            );
            metrics.reload("failure");
            return false;
        }
    };
    keep_restart_settings(&old.config, &mut new);
    let routes = new.router.len();
    live.store(App::reloaded(new, &old));
    metrics.reload("success");
    tracing::info!(reason = why, routes, "configuration reloaded");
    true
}

/// Settings read only at start: a change is logged as needing a restart, and the
/// running value is kept so the rest of the new config can apply.
fn keep_restart_settings(old: &Config, new: &mut Config) {
    let mut restart = Vec::new();
    if new.listen != old.listen {
        restart.push("listen");
        new.listen = old.listen;
    }
    if new.admin != old.admin {
        restart.push("admin.listen");
        new.admin = old.admin;
    }
    if broker::configured_limits(new) != broker::configured_limits(old) {
        // The hub's history and queues are sized at start.
        restart.push(
            "sse.history, history_ttl, history_bytes, subscriber_queue, subscriber_queue_bytes, max_subscribers, dedupe",
        );
        new.sse.history = old.sse.history;
        new.sse.history_ttl = old.sse.history_ttl;
        new.sse.history_bytes = old.sse.history_bytes;
        new.sse.subscriber_queue = old.sse.subscriber_queue;
        new.sse.subscriber_queue_bytes = old.sse.subscriber_queue_bytes;
        new.sse.max_subscribers = old.sse.max_subscribers;
        new.dedupe = old.dedupe.clone();
    }
    if new.limits.header_read_timeout != old.limits.header_read_timeout {
        restart.push("limits.header_read_timeout");
        new.limits.header_read_timeout = old.limits.header_read_timeout;
    }
    if new.limits.max_connections != old.limits.max_connections {
        restart.push("limits.max_connections");
        new.limits.max_connections = old.limits.max_connections;
    }
    if new.inspect.deliveries != old.inspect.deliveries {
        restart.push("inspect.deliveries");
        new.inspect.deliveries = old.inspect.deliveries;
    }
    if new.broker != old.broker {
        restart.push("broker");
        new.broker = old.broker.clone();
    }
    if new.log != old.log {
        restart.push("log");
        new.log = old.log.clone();
    }
    for key in restart {
        tracing::warn!(
            key,
            "restart required: this setting changed but applies only at start; the rest of the new configuration is applied"
        );
    }
}
