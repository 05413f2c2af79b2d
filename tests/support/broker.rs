//! The shared brokers the scale-out and fault tests run against, each a real
//! server of the test's own on a free port: `redis-server` (without persistence,
//! or writing every command to its append-only file), or `nats-server -js` with
//! a store directory of its own. Killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::net::TcpStream;

use super::{PATIENCE, free_port, wait_listening};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Redis,
    Nats,
}

pub struct BrokerServer {
    pub kind: Kind,
    pub port: u16,
    child: Option<Child>,
    /// NATS's JetStream store, or a persistent Redis's append-only file; removed on drop.
    store: PathBuf,
    /// Redis only: writes every command to its append-only file before answering.
    persistent: bool,
}

impl BrokerServer {
    pub async fn start(kind: Kind) -> BrokerServer {
        Self::start_on(kind, "127.0.0.1", free_port()).await
    }

    fn new(kind: Kind, port: u16) -> BrokerServer {
        let store = std::env::temp_dir().join(format!(
            "hookcast-nats-{}-{port}-{}",
            std::process::id(),
            fastrand::u32(..)
        ));
        BrokerServer {
            kind,
            port,
            child: None,
            store,
            persistent: false,
        }
    }

    async fn start_on(kind: Kind, host: &str, port: u16) -> BrokerServer {
        let mut b = Self::new(kind, port);
        b.spawn(host, None).await;
        b
    }

    /// A `redis-server` that writes every command to its append-only file before
    /// answering (`appendfsync always`), so a restart after a kill loses nothing
    /// it acknowledged.
    pub async fn start_persistent_redis() -> BrokerServer {
        let mut b = Self::new(Kind::Redis, free_port());
        b.persistent = true;
        std::fs::create_dir_all(&b.store).unwrap();
        b.spawn("127.0.0.1", None).await;
        b
    }

    /// Starts inside the network namespace `netns`, on every address it has;
    /// see [`BrokerServer::wait_reachable`].
    pub async fn start_in(kind: Kind, netns: &str, port: u16) -> BrokerServer {
        let mut b = Self::new(kind, port);
        b.spawn("0.0.0.0", Some(netns)).await;
        b
    }

    /// Waits until `host` (an address in the namespace) accepts connections.
    pub async fn wait_reachable(&self, host: &str) {
        let what = format!("the {:?} server at {host}", self.kind);
        wait_listening((host, self.port), &what).await;
    }

    /// Spawns the server, optionally through `ip netns exec NS`.
    async fn spawn(&mut self, host: &str, netns: Option<&str>) {
        let port = self.port.to_string();
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]);
                c
            }
            None => Command::new("env"),
        };
        match self.kind {
            Kind::Redis if self.persistent => cmd
                .args(["redis-server", "--port", &port, "--bind", host])
                .args(["--save", "", "--protected-mode", "no"])
                .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
                .arg(&self.store),
            Kind::Redis => cmd
                .args(["redis-server", "--port", &port, "--bind", host])
                .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"]),
            Kind::Nats => cmd
                .args(["nats-server", "-a", host, "-p", &port, "-js", "-sd"])
                .arg(&self.store),
        };
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server and nats-server are installed (scripts/deps)");
        self.child = Some(child);
        if netns.is_none() {
            self.wait_reachable(host).await;
        }
    }

    pub fn url(&self) -> String {
        self.url_at("127.0.0.1")
    }

    pub fn url_at(&self, host: &str) -> String {
        match self.kind {
            Kind::Redis => format!("redis://{host}:{}/0", self.port),
            Kind::Nats => format!("nats://{host}:{}", self.port),
        }
    }

    /// [`replica_yaml`] for this server, reached at its own URL with a 500 ms timeout.
    pub fn replica_yaml(&self, sse: &str, more: &str) -> String {
        replica_yaml(sse, &self.broker_yaml(&self.url(), "500ms"), more)
    }

    /// The `broker:` keys for this server (indented for a `broker:` map).
    pub fn broker_yaml(&self, url: &str, timeout: &str) -> String {
        let kind = match self.kind {
            Kind::Redis => "redis",
            Kind::Nats => "nats",
        };
        format!("  kind: {kind}\n  url: \"{url}\"\n  timeout: {timeout}\n")
    }

    /// Stops it and starts it again on the same port with its data (NATS and a
    /// persistent Redis keep their store; Redis without persistence comes back empty).
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn("127.0.0.1", None).await;
    }

    /// Stops it and starts it again on the same port with no data at all.
    pub async fn restart_empty(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.store);
        self.spawn("127.0.0.1", None).await;
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP: the server keeps its connections but answers nothing. Returns
    /// once every thread of it is stopped (a busy machine may take a moment).
    pub fn pause(&self) {
        self.signal("-STOP");
        let pid = self.child.as_ref().expect("running").id();
        let stopped = || {
            std::fs::read_dir(format!("/proc/{pid}/task"))
                .map(|tasks| {
                    tasks.flatten().all(|t| {
                        std::fs::read_to_string(t.path().join("stat")).is_ok_and(|stat| {
                            // The state follows the parenthesised command name.
                            stat.rsplit_once(") ")
                                .is_some_and(|(_, rest)| rest.starts_with('T'))
                        })
                    })
                })
                .unwrap_or(true)
        };
        let deadline = std::time::Instant::now() + PATIENCE;
        while !stopped() {
            assert!(
                std::time::Instant::now() < deadline,
                "the server did not stop"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGCONT: it runs again, and first handles what it was sent meanwhile.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let ok = Command::new("kill").args([sig, &pid]).status().unwrap();
        assert!(ok.success());
    }

    /// Drops every client connection: Redis by `CLIENT KILL`, NATS by a restart
    /// that keeps its store.
    pub async fn cut_connections(&mut self) {
        match self.kind {
            Kind::Redis => {
                let client = redis::Client::open(self.url()).unwrap();
                let mut admin = client.get_multiplexed_async_connection().await.unwrap();
                let _: redis::Value = redis::cmd("CLIENT")
                    .arg(&["KILL", "TYPE", "normal"][..])
                    .query_async(&mut admin)
                    .await
                    .unwrap();
            }
            Kind::Nats => self.restart().await,
        }
    }
}

impl Drop for BrokerServer {
    fn drop(&mut self) {
        // SIGKILL ends a stopped process too.
        self.kill();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// A replica's config: heartbeats every 200 ms and `retry: 1s`, then the `sse`
/// lines; `broker` (the keys of the `broker:` map, indented); the route `rooms`
/// (`/hooks/{room}` publishes to `room.{room}`); then `more`, which may go on
/// with the list of routes.
pub fn replica_yaml(sse: &str, broker: &str, more: &str) -> String {
    format!(
        r#"
sse:
  heartbeat: 200ms
  retry: 1s
{sse}broker:
{broker}routes:
  - name: rooms
    match:
      path: "/hooks/{{room}}"
    publish:
      topic: "room.{{path:room}}"
{more}"#
    )
}
