//! The command line (README, "Command line") and graceful shutdown of the real
//! process (README, "Operate"), run against the built `hookcast` binary.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use support::{PATIENCE, TempFile, free_addr};

const BIN: &str = env!("CARGO_BIN_EXE_hookcast");

// ---------------------------------------------------------------- helpers

/// The variables hookcast reads its options from (besides `RUST_LOG`).
const VARIABLES: [&str; 5] = [
    "HOOKCAST_CONFIG",
    "HOOKCAST_LISTEN",
    "HOOKCAST_ADMIN_LISTEN",
    "HOOKCAST_LOG_LEVEL",
    "HOOKCAST_LOG_FORMAT",
];

/// A `hookcast` command with a clean environment for the variables it reads.
fn hookcast() -> Command {
    let mut c = Command::new(BIN);
    for var in VARIABLES.iter().chain(&["RUST_LOG"]) {
        c.env_remove(var);
    }
    c.stdin(Stdio::null());
    c
}

/// A running child that is killed if the test ends before it exits.
struct Running {
    child: Child,
    /// Where stderr goes for long-running processes (a pipe could fill up).
    stderr_file: Option<TempFile>,
}

impl Running {
    fn spawn(mut cmd: Command) -> Running {
        let stderr_file = TempFile::new("stderr", "");
        let err = std::fs::File::create(stderr_file.path()).unwrap();
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn hookcast");
        Running {
            child,
            stderr_file: Some(stderr_file),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `limit` for the process to exit.
    fn wait_for(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stderr(&self) -> String {
        self.stderr_file
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f.path()).ok())
            .unwrap_or_default()
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {sig} failed");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs a command that must finish by itself, within PATIENCE.
fn run(cmd: Command) -> Output {
    let mut r = Running::spawn_piped(cmd);
    let status = r.wait_for(PATIENCE).expect("hookcast did not exit in time");
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut o) = r.child.stdout.take() {
        o.read_to_string(&mut stdout).unwrap();
    }
    if let Some(mut e) = r.child.stderr.take() {
        e.read_to_string(&mut stderr).unwrap();
    }
    Output {
        status,
        stdout: stdout.into_bytes(),
        stderr: stderr.into_bytes(),
    }
}

impl Running {
    /// Like `spawn`, with stdout and stderr piped (for short-lived commands whose
    /// output is small).
    fn spawn_piped(mut cmd: Command) -> Running {
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hookcast");
        Running {
            child,
            stderr_file: None,
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const ONE_ROUTE: &str = "routes:
  - name: a
    match:
      path: /hooks/a
    publish:
      topic: a
";

const THREE_ROUTES: &str = "routes:
  - name: a
    match: {path: /hooks/a}
    publish: {topic: a}
  - name: b
    match: {path: \"/hooks/b/{x}\"}
    publish: {topic: \"b.{path:x}\"}
  - name: c
    match: {path: /hooks/c, method: PUT}
    publish: {topic: [c, all]}
";

// ---------------------------------------------------------------- check

#[test]
fn check_valid_file_with_one_route() {
    let f = TempFile::new("one", ONE_ROUTE);
    let mut cmd = hookcast();
    cmd.args(["check", "--config", &f.name()]);
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "ok: 1 route\n");
}

#[test]
fn check_valid_file_with_three_routes() {
    let f = TempFile::new("three", THREE_ROUTES);
    let mut cmd = hookcast();
    cmd.args(["check", "--config", &f.name()]);
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "ok: 3 routes\n");
}

#[test]
fn check_invalid_file_prints_every_error_and_exits_2() {
    let yaml = "sse:
  heartbeat: 15
routes:
  - name: a
    match: {path: /hooks/a}
    publish: {topic: \"orders eu\"}
log:
  colour: red
";
    let f = TempFile::new("invalid", yaml);
    let mut cmd = hookcast();
    cmd.args(["check", "--config", &f.name()]);
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stdout), "", "nothing on stdout");
    let err = text(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
    let name = f.name();
    assert!(
        lines[0].starts_with(&format!("{name}:2:14: ")) && lines[0].contains("sse.heartbeat"),
        "{err}"
    );
    assert!(
        lines[1].starts_with(&format!("{name}:6:22: ")) && lines[1].contains("orders eu"),
        "{err}"
    );
    assert!(
        lines[2].starts_with(&format!("{name}:8:3: log: unknown field `colour`")),
        "{err}"
    );
}

#[test]
fn check_missing_file_exits_2_naming_it() {
    let path = std::env::temp_dir().join(format!(
        "hookcast-cli-{}-does-not-exist.yaml",
        std::process::id()
    ));
    let name = path.display().to_string();
    let mut cmd = hookcast();
    cmd.args(["check", "--config", &name]);
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains(&name), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "");
}

#[test]
fn check_uses_hookcast_config_when_config_is_absent() {
    let f = TempFile::new("env", THREE_ROUTES);
    let mut cmd = hookcast();
    cmd.arg("check").env("HOOKCAST_CONFIG", f.path());
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "ok: 3 routes\n");

    // --config wins over the environment
    let one = TempFile::new("env-one", ONE_ROUTE);
    let mut cmd = hookcast();
    cmd.args(["check", "--config", &one.name()])
        .env("HOOKCAST_CONFIG", f.path());
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "ok: 1 route\n");
}

#[test]
fn options_may_come_before_the_subcommand() {
    let f = TempFile::new("before", THREE_ROUTES);
    let mut cmd = hookcast();
    cmd.args(["--config", &f.name(), "check"]);
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "ok: 3 routes\n");
}

#[test]
fn a_missing_default_config_names_where_it_looked_and_the_example() {
    let dir = std::env::temp_dir().join(format!("hookcast-cli-{}-empty-dir", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for args in [&["check"][..], &[][..]] {
        let mut cmd = hookcast();
        cmd.args(args).current_dir(&dir);
        let out = run(cmd);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains("no configuration file at hookcast.yaml"),
            "{err}"
        );
        assert!(
            err.contains("neither --config nor $HOOKCAST_CONFIG is set"),
            "{err}"
        );
        assert!(err.contains("config.example.yaml"), "{err}");
    }
    // Named by the variable: the message says so.
    let mut cmd = hookcast();
    cmd.arg("check")
        .current_dir(&dir)
        .env("HOOKCAST_CONFIG", "elsewhere.yaml");
    let err = text(&run(cmd).stderr);
    assert!(
        err.contains("elsewhere.yaml (from $HOOKCAST_CONFIG)"),
        "{err}"
    );
    let _ = std::fs::remove_dir(&dir);
}

#[test]
fn a_bad_override_is_a_usage_error_naming_the_option() {
    let f = TempFile::new("bad-override", ONE_ROUTE);
    for (var, value, option) in [
        ("HOOKCAST_LISTEN", "nowhere", "--listen"),
        ("HOOKCAST_ADMIN_LISTEN", "127.0.0.1", "--admin-listen"),
        ("HOOKCAST_LOG_LEVEL", "loud", "--log-level"),
        ("HOOKCAST_LOG_FORMAT", "xml", "--log-format"),
    ] {
        let mut cmd = hookcast();
        cmd.args(["check", "--config", &f.name()]).env(var, value);
        let out = run(cmd);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}: {err}");
        assert!(err.contains(option) && err.contains(value), "{var}: {err}");
    }
}

// ---------------------------------------------------------------- usage

#[test]
fn version_prints_name_and_version() {
    let mut cmd = hookcast();
    cmd.arg("--version");
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        format!("hookcast {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn help_exits_0_with_usage() {
    let mut cmd = hookcast();
    cmd.arg("--help");
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("hookcast check"), "{stdout}");
    assert!(stdout.contains("hookcast route"), "{stdout}");
    assert!(stdout.contains("--config"), "{stdout}");
    for var in VARIABLES {
        assert!(stdout.contains(&format!("[env: {var}=")), "{var}: {stdout}");
    }
}

#[test]
fn route_takes_the_config_before_or_after_the_subcommand() {
    let f = TempFile::new("route", ONE_ROUTE);
    for args in [
        vec!["--config", &f.name(), "route", "--path", "/hooks/a"],
        vec!["route", "--config", &f.name(), "--path", "/hooks/a"],
    ] {
        let mut cmd = hookcast();
        cmd.args(&args);
        let out = run(cmd);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(text(&out.stdout).contains("a"), "{}", text(&out.stdout));
    }
    let mut cmd = hookcast();
    cmd.args(["route", "--help"]);
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stdout).contains("--verify"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn unknown_argument_exits_2() {
    let mut cmd = hookcast();
    cmd.arg("--frobnicate");
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--frobnicate"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout), "");
}

// ---------------------------------------------------------------- run

#[test]
fn invalid_config_exits_2_before_binding() {
    // Hold the port: if hookcast tried to bind before checking, it would fail with
    // exit 1 "cannot listen" instead of reporting the config error.
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap();
    let yaml = format!("listen: \"{addr}\"\nsse:\n  history: 0\n");
    let f = TempFile::new("bind", &yaml);
    let mut cmd = hookcast();
    cmd.args(["--config", &f.name()]);
    let out = run(cmd);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.starts_with(&format!("{}:3:12: ", f.name())), "{err}");
    assert!(!err.contains("cannot listen"), "{err}");
    drop(held);
}

#[test]
fn missing_config_file_exits_2_when_running() {
    let path = std::env::temp_dir().join(format!(
        "hookcast-cli-{}-run-missing.yaml",
        std::process::id()
    ));
    let name = path.display().to_string();
    let mut cmd = hookcast();
    cmd.args(["--config", &name]);
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains(&name), "{}", text(&out.stderr));
}

// ---------------------------------------------------------------- graceful shutdown

/// A raw HTTP/1.1 client connection that reads a chunked response incrementally.
struct RawStream {
    sock: TcpStream,
    raw: Vec<u8>,
    eof: bool,
}

/// A decoded chunked response: its head, the body so far, and whether the
/// terminating zero-size chunk was seen.
struct Decoded {
    head: String,
    body: String,
    terminated: bool,
}

impl RawStream {
    fn open(addr: SocketAddr, request: &str) -> RawStream {
        let mut sock = TcpStream::connect_timeout(&addr, PATIENCE).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        sock.set_write_timeout(Some(PATIENCE)).unwrap();
        sock.write_all(request.as_bytes()).unwrap();
        RawStream {
            sock,
            raw: Vec::new(),
            eof: false,
        }
    }

    /// Reads what is available, returning false if nothing came within the short
    /// read timeout.
    fn pump(&mut self) -> bool {
        if self.eof {
            return false;
        }
        let mut buf = [0u8; 8192];
        match self.sock.read(&mut buf) {
            Ok(0) => {
                self.eof = true;
                false
            }
            Ok(n) => {
                self.raw.extend_from_slice(&buf[..n]);
                true
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                false
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                panic!("connection reset; got so far: {:?}", text(&self.raw))
            }
            Err(e) => panic!("read failed: {e}"),
        }
    }

    /// Reads until `done` holds for the decoded response, or panics after `limit`.
    fn read_until(&mut self, limit: Duration, what: &str, done: impl Fn(&Decoded) -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(d) = decode_chunked(&self.raw)
                && done(&d)
            {
                return;
            }
            if self.eof || Instant::now() >= deadline {
                panic!(
                    "waiting for {what}: eof={} received {:?}",
                    self.eof,
                    text(&self.raw)
                );
            }
            self.pump();
        }
    }

    fn decoded(&self) -> Decoded {
        decode_chunked(&self.raw).expect("a response head")
    }
}

/// Decodes a `Transfer-Encoding: chunked` response as far as it has arrived.
fn decode_chunked(raw: &[u8]) -> Option<Decoded> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = text(&raw[..end]);
    assert!(
        head.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "not chunked: {head}"
    );
    let mut rest = &raw[end + 4..];
    let mut body = Vec::new();
    let mut terminated = false;
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size_line = text(&rest[..eol]);
        let size_hex = size_line.split(';').next().unwrap().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .unwrap_or_else(|_| panic!("bad chunk size line {size_line:?}"));
        if size == 0 {
            // The last chunk, then (no trailers) the final CRLF.
            terminated = rest[eol + 2..].starts_with(b"\r\n");
            break;
        }
        let start = eol + 2;
        if rest.len() < start + size + 2 {
            break;
        }
        body.extend_from_slice(&rest[start..start + size]);
        assert_eq!(&rest[start + size..start + size + 2], b"\r\n", "chunk end");
        rest = &rest[start + size + 2..];
    }
    Some(Decoded {
        head,
        body: text(&body),
        terminated,
    })
}

/// Sends one request on a new connection and returns the whole response.
fn http_request(addr: SocketAddr, request: &str) -> String {
    let mut sock = TcpStream::connect_timeout(&addr, PATIENCE).unwrap();
    sock.set_read_timeout(Some(PATIENCE)).unwrap();
    sock.set_write_timeout(Some(PATIENCE)).unwrap();
    sock.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    sock.read_to_end(&mut out).unwrap();
    text(&out)
}

/// POSTs `body` to `path` on a new connection and returns the whole response.
fn post(addr: SocketAddr, path: &str, body: &str) -> String {
    http_request(
        addr,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

fn wait_until_accepting(addr: SocketAddr, app: &mut Running) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        if let Some(status) = app.child.try_wait().unwrap() {
            panic!("hookcast exited early with {status}: {}", app.stderr());
        }
        assert!(
            Instant::now() < deadline,
            "hookcast did not accept on {addr} within {PATIENCE:?}: {}",
            app.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// hookcast on a free port with `extra` config and one route (`/hooks/{room}` to
/// topic `room.{room}`), and a stream on `room.a` that has read its prelude.
struct Rooms {
    addr: SocketAddr,
    app: Running,
    sse: RawStream,
    _config: TempFile,
}

fn rooms_with_a_stream(tag: &str, extra: &str) -> Rooms {
    let addr = free_addr();
    let yaml = format!(
        "listen: \"{addr}\"
shutdown_grace: 5s
{extra}routes:
  - name: rooms
    match:
      path: \"/hooks/{{room}}\"
    publish:
      topic: \"room.{{path:room}}\"
"
    );
    let config = TempFile::new(tag, &yaml);
    let mut cmd = hookcast();
    cmd.args(["--config", &config.name()]);
    let mut app = Running::spawn(cmd);
    wait_until_accepting(addr, &mut app);
    let mut sse = RawStream::open(addr, "GET /events?topic=room.a HTTP/1.1\r\nHost: x\r\n\r\n");
    sse.read_until(PATIENCE, "the prelude", |d| d.body.contains(": hookcast"));
    Rooms {
        addr,
        app,
        sse,
        _config: config,
    }
}

fn graceful_shutdown_on(sig: &str) {
    let Rooms {
        addr,
        mut app,
        mut sse,
        _config,
    } = rooms_with_a_stream("shutdown", "sse:\n  retry: 1s\n");
    let d = sse.decoded();
    assert!(d.head.starts_with("HTTP/1.1 200"), "{}", d.head);
    assert!(d.body.starts_with("retry: 1000\n"), "{:?}", d.body);

    // Publish and see the event arrive.
    let payload = format!("hello-{sig}");
    let response = post(addr, "/hooks/a", &payload);
    assert!(response.starts_with("HTTP/1.1 202"), "{response}");
    let data_line = format!("data: {payload}\n");
    sse.read_until(PATIENCE, "the event", |d| d.body.contains(&data_line));

    // Signal and wait for the process to exit.
    let signalled = Instant::now();
    app.signal(sig);
    let status = app.wait_for(Duration::from_secs(5));
    let Some(status) = status else {
        panic!(
            "hookcast did not exit within 5 s of {sig}: {}",
            app.stderr()
        );
    };
    assert_eq!(
        status.code(),
        Some(0),
        "exit after {sig} ({:?}): {}",
        signalled.elapsed(),
        app.stderr()
    );

    // Whatever the stream received before it ended.
    let deadline = Instant::now() + PATIENCE;
    while !sse.eof && Instant::now() < deadline {
        if !sse.pump() && decode_chunked(&sse.raw).is_some_and(|d| d.terminated) {
            break;
        }
    }
    let d = sse.decoded();
    assert!(
        d.terminated || sse.eof,
        "stream did not end: {:?}",
        text(&sse.raw)
    );
    let after_event = &d.body[d.body.find(&data_line).unwrap() + data_line.len()..];
    let retry_ms: u64 = after_event
        .lines()
        .find_map(|l| l.strip_prefix("retry: "))
        .unwrap_or_else(|| panic!("no retry: after the event: {after_event:?}"))
        .trim()
        .parse()
        .expect("retry: is a number");
    assert!(
        (1000..=2000).contains(&retry_ms),
        "retry {retry_ms} not in [1000, 2000]"
    );
    // A clean end: nothing after the terminator.
    if d.terminated {
        let raw = text(&sse.raw);
        assert!(raw.ends_with("0\r\n\r\n"), "{raw:?}");
    }

    // The listener is gone.
    let refused = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
    assert!(refused.is_err(), "a new connection was accepted after exit");
    assert_eq!(
        refused.unwrap_err().kind(),
        std::io::ErrorKind::ConnectionRefused
    );
}

#[test]
fn sigterm_closes_streams_with_retry_and_exits_0() {
    graceful_shutdown_on("-TERM");
}

#[test]
fn sigint_closes_streams_with_retry_and_exits_0() {
    graceful_shutdown_on("-INT");
}

// ---------------------------------------------------------------- reload and admin

/// Waits until stderr contains `needle`.
fn wait_for_log(app: &mut Running, needle: &str) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let err = app.stderr();
        if err.contains(needle) {
            return err;
        }
        assert!(
            Instant::now() < deadline,
            "no `{needle}` in the log within {PATIENCE:?}:\n{err}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sighup_reloads_and_a_listen_change_is_logged_as_restart_required() {
    let addr = free_addr();
    let admin = free_addr();
    let yaml = format!("listen: \"{addr}\"\nadmin:\n  listen: \"{admin}\"\n{ONE_ROUTE}");
    let f = TempFile::new("sighup", &yaml);
    let mut cmd = hookcast();
    cmd.args(["--config", &f.name()]);
    let mut app = Running::spawn(cmd);
    wait_until_accepting(addr, &mut app);
    let started = wait_for_log(&mut app, "effective configuration");
    assert!(started.contains("routes=1"), "{started}");

    let moved = free_addr();
    std::fs::write(
        f.path(),
        format!("listen: \"{moved}\"\nadmin:\n  listen: \"{admin}\"\n{THREE_ROUTES}"),
    )
    .unwrap();
    app.signal("-HUP");
    let log = wait_for_log(&mut app, "reason=\"SIGHUP\"");
    assert!(log.contains("restart required"), "{log}");
    assert!(log.contains("key=\"listen\""), "{log}");
    // The rest applied: route b exists now, still served on the first address.
    let r = http_request(
        addr,
        "POST /hooks/b/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx",
    );
    assert!(r.starts_with("HTTP/1.1 202"), "{r}");
    let r = http_request(
        admin,
        "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");

    app.signal("-TERM");
    let status = app.wait_for(PATIENCE).expect("exits");
    assert!(status.success(), "{status:?}");
    let log = app.stderr();
    assert!(log.contains("draining"), "{log}");
    assert!(log.contains("drained"), "{log}");
}

#[test]
fn the_environment_overrides_listen_admin_and_log_format_and_survives_a_reload() {
    // The file's addresses are taken: only the overrides can be served.
    let taken = [
        TcpListener::bind("127.0.0.1:0").unwrap(),
        TcpListener::bind("127.0.0.1:0").unwrap(),
    ];
    let [l, a] = taken.each_ref().map(|t| t.local_addr().unwrap());
    let yaml =
        format!("listen: \"{l}\"\nadmin:\n  listen: \"{a}\"\nlog:\n  format: text\n{ONE_ROUTE}");
    let f = TempFile::new("env-overrides", &yaml);
    let (addr, admin) = (free_addr(), free_addr());
    let mut cmd = hookcast();
    cmd.arg("--config")
        .arg(f.path())
        .env("HOOKCAST_LISTEN", addr.to_string())
        .env("HOOKCAST_ADMIN_LISTEN", admin.to_string())
        .env("HOOKCAST_LOG_FORMAT", "json")
        .env("HOOKCAST_LOG_LEVEL", "info");
    let mut app = Running::spawn(cmd);
    wait_until_accepting(addr, &mut app);
    let r = http_request(
        admin,
        "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let log = wait_for_log(&mut app, "effective configuration");
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string(), "{line}");
    }
    // A reload keeps the overrides: no "restart required" for listen.
    app.signal("-HUP");
    let log = wait_for_log(&mut app, "configuration reloaded");
    assert!(!log.contains("restart required"), "{log}");
    app.signal("-TERM");
    assert!(app.wait_for(PATIENCE).expect("exits").success());
    drop(taken);
}

#[test]
fn a_taken_admin_port_exits_1() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let admin = taken.local_addr().unwrap();
    let yaml = format!(
        "listen: \"{}\"\nadmin:\n  listen: \"{admin}\"\n{ONE_ROUTE}",
        free_addr()
    );
    let f = TempFile::new("admin-taken", &yaml);
    let mut cmd = hookcast();
    cmd.args(["--config", &f.name()]);
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot listen on admin.listen"));
}

// ---------------------------------------------------------------- the log at info

/// The log lines (text format) that contain `needle`.
fn lines_with(log: &str, needle: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

#[test]
fn at_info_each_webhook_outcome_and_each_stream_closed_by_hookcast_is_one_line() {
    let Rooms {
        addr,
        mut app,
        sse: _sse,
        _config,
    } = rooms_with_a_stream("outcome-log", "log:\n  level: info\n");

    let body = "{\"card\":\"4111-secret-body\"}";
    let r = post(addr, "/hooks/a", body);
    assert!(r.starts_with("HTTP/1.1 202"), "{r}");
    let id = r
        .split("\"id\":\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    // A refusal: the rendered topic is invalid.
    let r = post(addr, "/hooks/a%20b", "{}");
    assert!(r.starts_with("HTTP/1.1 422"), "{r}");
    let log = wait_for_log(&mut app, "code=\"invalid_topic\"");
    let webhooks = lines_with(&log, " webhook ");
    assert_eq!(webhooks.len(), 2, "{log}");
    for (line, want) in webhooks.iter().zip([
        [
            "route=\"rooms\"",
            "status=202",
            "result=\"published\"",
            &format!("id=\"{id}\""),
        ],
        [
            "route=\"rooms\"",
            "status=422",
            "result=\"refused\"",
            "code=\"invalid_topic\"",
        ],
    ]) {
        assert!(line.contains(" INFO "), "{line}");
        assert!(line.contains("elapsed_ms="), "{line}");
        for w in want {
            assert!(line.contains(w), "no {w} in {line}");
        }
    }
    assert!(
        !log.contains("secret-body"),
        "a body reached the log: {log}"
    );
    assert!(
        !log.contains("InvalidTopic"),
        "Rust Debug text in the log: {log}"
    );

    app.signal("-TERM");
    assert!(app.wait_for(PATIENCE).expect("exits").success());
    let log = app.stderr();
    let closed = lines_with(&log, "stream closed by hookcast");
    assert_eq!(closed.len(), 1, "{log}");
    assert!(
        closed[0].contains(" INFO ") && closed[0].contains("reason=\"shutdown\""),
        "{}",
        closed[0]
    );
}
