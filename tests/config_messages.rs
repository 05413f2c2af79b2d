//! Every message a rejected configuration shows, word for word, for the checks whose
//! errors are typed values (README "Configuration"): the wording users read and
//! search for does not change when the types behind it do.

use hookcast::config;

/// The whole report for `yaml`, one `FILE:LINE:COL: message` per line.
#[track_caller]
fn report(yaml: &str) -> String {
    match config::from_yaml("test.yaml", yaml) {
        Ok(_) => panic!("accepted, but it should have been rejected:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

/// `limits.trusted_proxies` (CidrError), `cors.allow_origins` (OriginError), `log.level` (LogLevelError).
#[test]
fn limits_cors_and_log_values() {
    let yaml = r#"limits:
  trusted_proxies: ["10.0.0.0/33", "x/8", "::/129", "1.2.3.4", ""]
cors:
  allow_origins: ["app.example.com", "https://app.example.com/", "ftp://x", "https://", "https://*.example.com", "https://a b", "*"]
  allow_credentials: true
log:
  level: verbose
  format: xml
"#;
    assert_eq!(
        report(yaml),
        r#"test.yaml:2:21: limits.trusted_proxies: `10.0.0.0/33`: the prefix length must be 0 to 32
test.yaml:2:36: limits.trusted_proxies: `x/8` is not an address block; write e.g. 10.0.0.0/8 or fd00::/8
test.yaml:2:43: limits.trusted_proxies: `::/129`: the prefix length must be 0 to 128
test.yaml:2:64: limits.trusted_proxies: `` is not an address block; write e.g. 10.0.0.0/8 or fd00::/8
test.yaml:4:19: cors.allow_origins: `app.example.com` is not an origin; write scheme://host[:port], e.g. https://app.example.com
test.yaml:4:38: cors.allow_origins: `https://app.example.com/` is not an origin: browsers send no path, not even a trailing `/`; write `https://app.example.com`
test.yaml:4:66: cors.allow_origins: `ftp://x`: an origin starts with http:// or https://
test.yaml:4:77: cors.allow_origins: `https://` has no host
test.yaml:4:89: cors.allow_origins: `https://*.example.com`: wildcards are not supported inside an origin; list each origin, or use "*" alone
test.yaml:4:114: cors.allow_origins: `https://a b` is not an origin; write scheme://host[:port]
test.yaml:5:22: cors.allow_credentials cannot be true with allow_origins ["*"]: browsers refuse credentials for a wildcard origin; list the origins instead
test.yaml:7:10: log.level `verbose` is not a level or filter; use error, warn, info, debug or trace
test.yaml:8:11: log.format `xml` is not known; use text or json"#
    );
}

/// Route paths (PathError), templates (template::ParseError), `publish.data` (DataError) and the other route checks.
#[test]
fn route_paths_templates_and_data() {
    let yaml = r#"routes:
  - name: a
    match: { path: "hooks", method: post, headers: { "bad header": x }, json: { "id": 1 } }
    publish: { topic: "x.{path:t}", event: "hookcast.x", data: "{json:id}", dedupe: "{body:x}" }
  - name: b
    match: { path: "/a/{x}/{x}" }
    publish: { topic: [], data: { a: { "{json:/x}": }, b: ["{nope}"] } }
  - name: c
    match: { path: "/a/x{y}" }
    mode: forward
    publish: { topic: "a b", event: "x{header:bad name}" }
  - name: c
    match: { path: "/{}" }
    mode: other
    publish: { topic: "{claim:/x}.{response:/y}", data: "{query}{json:x}" }
  - name: d
    match: { path: "/events" }
    publish: { topic: "t", data: "{body" }
"#;
    assert_eq!(
        report(yaml),
        r#"test.yaml:3:20: route `a`: route path `hooks` must start with `/`
test.yaml:3:37: route `a`: `post` is not an HTTP method such as POST
test.yaml:3:54: route `a`: `bad header` is not a valid header name
test.yaml:3:81: route `a`: `id` is not a JSON Pointer; it must start with `/`
test.yaml:4:44: route `a`: publish.event `hookcast.x` is reserved: names starting with `hookcast.` are hookcast's own events
test.yaml:4:64: route `a`: publish.data: `{json:id}` is not a JSON Pointer; it must start with `/` (e.g. `{json:/id}`)
test.yaml:4:85: route `a`: publish.dedupe: `{body}` takes no argument
test.yaml:6:20: route `b`: segment `{x}` appears twice in route path `/a/{x}/{x}`
test.yaml:7:23: route `b`: publish.topic lists no topic
test.yaml:7:33: route `b`: publish.data: at `b[0]`: unknown placeholder kind `nope`; expected path, query, header, json, response, body, claim or auth
test.yaml:9:20: route `c`: route path `/a/x{y}`: a `{name}` placeholder must be a whole segment
test.yaml:10:11: route `c`: mode forward passes the request to the upstream, but no upstream is configured; set upstream.url
test.yaml:11:23: route `c`: publish.topic `a b`: topic contains ' '; only A-Z a-z 0-9 . _ - : / are allowed
test.yaml:11:37: route `c`: publish.event: `bad name` in `{header:bad name}` is not a valid header name
test.yaml:12:11: route name `c` is used twice; names must be unique
test.yaml:13:20: route `c`: `{}` in route path `/{}` is not a valid segment name
test.yaml:14:11: route `c`: unknown mode `other`; expected publish or forward
test.yaml:15:23: route `c`: publish.topic: `{claim:…}` and `{auth:…}` name a subscriber, so they are for streams, not webhook routes
test.yaml:15:23: route `c`: publish.topic: `{response:…}` can never resolve in mode publish: there is no upstream answer
test.yaml:15:57: route `c`: publish.data: placeholder `{query:…}` needs a name after `:`
test.yaml:17:20: route `d`: path `/events` is taken by hookcast itself (sse.path or /_hookcast/)"#
    );
}

/// `broker: { kind: nats }`: its URL (NatsUrlError), names (NatsNameError) and keys.
#[test]
fn nats_broker_values() {
    let yaml = r#"broker: { kind: nats, url: "nats://a,,b", stream: "a.b", subject_prefix: "a.*", replicas: 7, prefix: x, feed_length: 0, max_bytes: 0, max_msgs: 0, timeout: 1ms }
dedupe: { window: 2h }
sse: { history_ttl: 1h }
"#;
    assert_eq!(
        report(yaml),
        r#"test.yaml:1:17: with kind: nats, dedupe.window (7200s) must not exceed sse.history_ttl (3600s): JetStream remembers dedupe keys only as long as it keeps events
test.yaml:1:28: broker.url: `nats://a,,b` has an empty server address; write nats://[user:password@]host[:port], several separated by commas
test.yaml:1:51: broker.stream: `a.b` is not a stream name: use 1 to 255 of A-Z a-z 0-9 _ -
test.yaml:1:74: broker.subject_prefix: `a.*` is not a subject prefix: use dot-separated tokens without spaces, `*` or `>`, e.g. hookcast
test.yaml:1:91: broker.replicas must be from 1 to 5 (JetStream keeps at most 5 copies)
test.yaml:1:102: broker.prefix is used only with kind: redis
test.yaml:1:118: broker.feed_length is used only with kind: redis
test.yaml:1:132: broker.max_bytes must be at least 1 byte
test.yaml:1:145: broker.max_msgs must be at least 1
test.yaml:1:157: broker.timeout must be at least 10ms"#
    );
}

/// `broker: { kind: redis }`: its URL (RedisUrlError) and keys.
#[test]
fn redis_broker_values() {
    let yaml = r#"broker: { kind: redis, url: "rediss://h", stream: x, prefix: "a b", timeout: 5 }
"#;
    assert_eq!(
        report(yaml),
        r#"test.yaml:1:29: broker.url: TLS (rediss://) is not built into hookcast; reach Redis on a private network or through a TLS tunnel
test.yaml:1:51: broker.stream is used only with kind: nats
test.yaml:1:62: broker.prefix must be non-empty, without spaces or control characters
test.yaml:1:78: broker.timeout: duration `5` needs a unit: d, h, m, s or ms (e.g. `5s`)"#
    );
}

/// Durations (DurationError), sizes (SizeError) and `upstream.url`.
#[test]
fn units_and_upstream_values() {
    let yaml = r#"upstream: { url: "ftp://x", timeout: "1m1h", connect_timeout: "15", pool_idle_timeout: "" }
sse: { heartbeat: "abc", retry: "99999999999999999999d", history_bytes: "5XB", subscriber_queue_bytes: "1.5" }
limits: { max_body: "99999999999GiB" }
"#;
    assert_eq!(
        report(yaml),
        r#"test.yaml:1:18: upstream.url: `ftp://x`: scheme `ftp` is not supported; write http://HOST:PORT
test.yaml:1:38: upstream.timeout: duration `1m1h`: write its parts from the largest unit down, each once (e.g. 1h30m)
test.yaml:1:63: upstream.connect_timeout: duration `15` needs a unit: d, h, m, s or ms (e.g. `15s`)
test.yaml:1:88: upstream.pool_idle_timeout: an empty string is not a duration; write a number with a unit (d, h, m, s or ms)
test.yaml:2:19: sse.heartbeat: `abc` is not a duration; write a number with a unit (d, h, m, s or ms): 500ms, 1.5s, 10m, 1h30m, 1d
test.yaml:2:33: sse.retry: `99999999999999999999d` is too large a duration
test.yaml:2:73: sse.history_bytes: `XB` is not a size unit; use KiB, MiB, GiB (or Ki, Mi, Gi), KB, MB or GB
test.yaml:2:104: sse.subscriber_queue_bytes: `1.5` is not a whole number of bytes
test.yaml:3:21: limits.max_body: `99999999999GiB` is too large a size"#
    );
}

/// `subscribers.jwt`: algorithms, claim, cookie, leeway.
#[test]
fn jwt_values() {
    let yaml = r#"subscribers:
  auth: jwt
  jwt:
    algorithms: [RS256, XX1]
    topics_claim: "x"
    cookie: "a b"
    leeway: 1q
"#;
    assert_eq!(
        report(yaml),
        r#"test.yaml:4:18: subscribers.jwt.algorithms: RS256 needs an RSA public key (public_key_env or public_key_file)
test.yaml:4:25: subscribers.jwt.algorithms: `XX1` is not supported; use HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384
test.yaml:5:19: subscribers.jwt.topics_claim `x` is not a JSON Pointer; it must start with `/`, e.g. /hookcast/subscribe
test.yaml:6:13: subscribers.jwt.cookie `a b` is not a cookie name
test.yaml:7:13: subscribers.jwt.leeway: `q` is not a duration unit; use d, h, m, s or ms"#
    );
}

/// A placeholder YAML read as a mapping inside `publish.data` (DataProblem).
#[test]
fn unquoted_placeholder_in_data() {
    let yaml = r#"routes:
  - name: a
    match: { path: "/a" }
    publish:
      topic: t
      data:
        id: {json:/id}
"#;
    assert_eq!(
        report(yaml),
        r#"test.yaml:7:9: route `a`: publish.data: at `id`: YAML reads `{json:/id}` as a mapping; put the template in quotes: "{json:/id}""#
    );
}
