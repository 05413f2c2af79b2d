//! The state a request is served with: [`App`], one config generation (the config
//! and what is built from it, with the hub and the broker that outlive it), and
//! [`Live`], which holds the current generation and swaps it on a reload.
//!
//! Every handler (`service`, the fast path, `subscribe`, `ingest`, `admin`) reads
//! the state from here, and `reload` replaces it here: no handler reaches into
//! another's module for it (README "Architecture").

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use http::{Request, Response, StatusCode};

use crate::auth::Authorizer;
use crate::broker::Broker;
use crate::config::{self, Config};
use crate::demo;
use crate::hub::Hub;
use crate::inspect::Deliveries;
use crate::limits::IpSlots;
use crate::metrics::{Metrics, RouteCounters};
use crate::proxy::{self, Upstream};
use crate::reply::{self, Body};

/// What every request handler shares: one config generation.
#[derive(Debug)]
pub struct App {
    pub config: Config,
    pub hub: Arc<Hub>,
    /// Stores and shares events; in front of `hub`.
    pub broker: Broker,
    /// The demo page, when `demo: true`.
    pub demo_page: Option<bytes::Bytes>,
    /// The application behind hookcast, when `upstream` is configured.
    pub upstream: Option<Upstream>,
    pub auth: Authorizer,
    /// Streams per client address, when `limits.max_subscribers_per_ip` is set.
    pub ip_slots: Option<IpSlots>,
    /// The delivery log, when the admin listener can show it; kept across reloads.
    pub deliveries: Option<Arc<Deliveries>>,
    /// The hot counters of each route of this generation, by the route's index.
    route_counters: Vec<RouteCounters>,
}

impl App {
    /// The handlers' state for a config reloaded while `old` served: the hub, the
    /// broker and the per-address stream counts carry over, the rest is built anew.
    pub fn reloaded(config: Config, old: &App) -> Self {
        let mut app = App::with_broker(config, old.hub.clone(), old.broker.clone());
        app.deliveries = old.deliveries.clone();
        if let (Some(new), Some(old)) = (&mut app.ip_slots, &old.ip_slots) {
            *new = old.with_max(
                app.config
                    .limits
                    .max_subscribers_per_ip
                    .unwrap_or(usize::MAX),
            );
        }
        app
    }

    /// Whether the broker can take events (README "Operate", `/readyz`).
    pub fn ready(&self) -> bool {
        self.broker.ready()
    }

    /// Must be called within the runtime: a Redis broker starts its reader task.
    pub fn new(config: Config, hub: Arc<Hub>) -> Self {
        let broker = Broker::new(&config, hub.clone());
        App::with_broker(config, hub, broker)
    }

    fn with_broker(config: Config, hub: Arc<Hub>, broker: Broker) -> Self {
        let demo_page = config.demo.then(|| demo::page(&config));
        let upstream = config
            .upstream
            .as_ref()
            .map(|u| Upstream::new(&proxy_settings(u)));
        let auth = Authorizer::new(&config.subscribers);
        let ip_slots = config.limits.max_subscribers_per_ip.map(IpSlots::new);
        let deliveries = Deliveries::for_config(&config);
        let route_counters = (0..config.router.len())
            .map(|_| RouteCounters::default())
            .collect();
        App {
            config,
            hub,
            broker,
            demo_page,
            upstream,
            auth,
            ip_slots,
            deliveries,
            route_counters,
        }
    }

    /// The Prometheus metrics, shared by every config generation.
    pub fn metrics(&self) -> &Metrics {
        self.hub.metrics()
    }

    /// The kept counters of the route at `index` in this generation's router.
    pub fn route_counters(&self, index: usize) -> Option<&RouteCounters> {
        self.route_counters.get(index)
    }

    /// Sends a request to the upstream and counts the status the client gets; 404
    /// without an upstream.
    pub async fn pass(&self, req: Request<Body>) -> Response<Body> {
        match &self.upstream {
            Some(upstream) => {
                let resp = upstream.pass(req).await;
                self.metrics().proxied(resp.status().as_u16());
                resp
            }
            None => reply::error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!(
                    "Nothing is served at {}, and no upstream is configured.",
                    req.uri().path()
                ),
            ),
        }
    }
}

/// The proxy's settings from the `upstream` section: the proxy reads no config.
fn proxy_settings(u: &config::Upstream) -> proxy::Settings {
    proxy::Settings {
        authority: u.authority.clone(),
        base_path: u.base_path.clone(),
        timeout: u.timeout,
        connect_timeout: u.connect_timeout,
        pool_idle_timeout: u.pool_idle_timeout,
        pool_max_idle_per_host: u.pool_max_idle_per_host,
    }
}

/// What every connection reads its handlers' state from, and the draining flag.
#[derive(Debug)]
pub struct Live {
    /// Read once per request (and per stream when it opens); never held across `.await`.
    app: RwLock<Arc<App>>,
    draining: AtomicBool,
    /// Open client connections on the public listener, kept by the accept loop.
    pub connections: Arc<AtomicUsize>,
}

impl Live {
    pub fn new(app: App) -> Arc<Self> {
        Arc::new(Live {
            app: RwLock::new(Arc::new(app)),
            draining: AtomicBool::new(false),
            connections: Arc::default(),
        })
    }

    /// The current config generation; a request keeps the one it started with.
    pub fn load(&self) -> Arc<App> {
        self.app
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Makes `app` the generation every new request reads.
    pub fn store(&self, app: App) {
        *self.app.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(app);
    }

    /// Marks the process as draining: `/readyz` answers 503 from now on.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Ready for traffic: not draining, and the broker takes publishes.
    pub fn is_ready(&self) -> bool {
        !self.is_draining() && self.load().ready()
    }
}
