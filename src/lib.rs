//! hookcast: a reverse-proxy sidecar that turns webhooks into Server-Sent Events.
//!
//! It accepts webhook POSTs, maps each to topics by YAML routes, and streams it to
//! every `EventSource` following those topics, with heartbeats, replay after a
//! reconnect, and no buffering.
//!
//! # Layout
//!
//! The modules are layered, each importing only from below (README "Architecture",
//! checked by `tests/layers/`).
//! - [`config`]: the YAML file, checked whole before any port is bound.
//! - [`server`]: the accept loop and graceful shutdown; [`run`] is the entry point.
//! - [`conn`]: what the accept loop hands each request of a connection (client address, cut notice).
//! - [`app`]: one config generation ([`app::App`]) and the current one ([`app::Live`]).
//! - [`accept`]: accepting at the file-descriptor limit (waiting connections closed at once).
//! - [`fast`]: event streams over HTTP/1.x, served straight on the socket.
//! - [`service`]: the hyper service: sends each request to a subscription, a webhook route, the demo page or the upstream.
//! - [`ingest`]: webhooks: body limit, route match, signature check, templates, publish; forward-mode routes.
//! - [`route`]: webhook routes: path patterns, matchers, the router.
//! - [`proxy`]: the upstream: streaming pass-through, hop-by-hop headers, upgrades, 502/504.
//! - [`template`]: `{path:}`, `{query:}`, `{header:}`, `{json:}`, `{body}`, `{response:}` templates.
//! - [`data`]: `publish.data`: text, or JSON built from a YAML mapping or sequence.
//! - [`verify`]: webhook signature schemes.
//! - [`auth`]: subscriber authorization: JWT, forward-auth.
//! - [`cors`]: CORS on the event stream.
//! - [`limits`]: client addresses behind trusted proxies, streams per address.
//! - [`topic`]: topic names and `*` / `>` patterns.
//! - [`hub`]: topics, bounded history, fan-out, replay.
//! - [`broker`]: where events are stored: the hub alone, or Redis Streams or NATS JetStream shared by replicas.
//! - [`streams`]: stream routes: event streams on the application's own URLs, topics from the request and the subscriber's identity.
//! - [`subscribe`]: a subscription for both HTTP paths: request, slot, authorization, opening, headers.
//! - [`sse`]: the event-stream encoding and the streaming response body.
//! - [`reply`]: the response body type, JSON errors and 405.
//! - [`demo`]: the demo page.
//! - [`admin`]: the admin listener: `/healthz`, `/readyz`, `/metrics`, and the operator page with redelivery.
//! - [`inspect`]: the delivery log: each webhook's route, signature result and event.
//! - [`dryrun`]: `hookcast route`: which route a request would take, and what it would publish.
//! - [`metrics`]: the Prometheus metrics.
//! - [`reload`]: reloading the config on SIGHUP or a file change.
//! - [`shutdown`]: SIGTERM / SIGINT, and SIGHUP for reloads.

pub mod accept;
pub mod admin;
pub mod app;
pub mod auth;
pub mod broker;
pub mod config;
pub mod conn;
pub mod cors;
pub mod data;
pub mod demo;
pub mod dryrun;
pub mod fast;
pub mod hub;
pub mod ingest;
pub mod inspect;
pub mod limits;
pub mod metrics;
pub mod proxy;
pub mod reload;
pub mod reply;
pub mod route;
pub mod server;
pub mod service;
pub mod shutdown;
pub mod sse;
pub mod streams;
pub mod subscribe;
pub mod template;
pub mod topic;
pub mod verify;

pub use config::Config;
pub use server::{Options, run, serve};
