//! Third-party SSE clients against a real hookcast: each one is a script under
//! `tests/clients/`, driven line by line over its stdin and stdout.
//!
//! The Python client runs in the project's `.venv` (or `$HOOKCAST_PYTHON`), which
//! `scripts/test` creates and fills; without it these tests fail, never skip.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use http::StatusCode;
use serde_json::{Value, json};
use support::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// Longest wait for one line from a client: it starts an interpreter first.
const CLIENT_PATIENCE: Duration = Duration::from_secs(30);

fn python() -> PathBuf {
    let python = std::env::var_os("HOOKCAST_PYTHON").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"),
        PathBuf::from,
    );
    let ready = std::process::Command::new(&python)
        .args(["-c", "import httpx, httpx_sse"])
        .stdin(Stdio::null())
        .output();
    match ready {
        Ok(out) if out.status.success() => python,
        Ok(out) => panic!(
            "{} cannot import httpx and httpx_sse ({}): run `scripts/test`, which installs \
             them into .venv, or set HOOKCAST_PYTHON to a Python that has them",
            python.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!(
            "no Python at {} ({e}): run `scripts/test`, which creates .venv with httpx and \
             httpx-sse, or set HOOKCAST_PYTHON",
            python.display()
        ),
    }
}

/// A client script running as a child process.
struct Client {
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: tokio::task::JoinHandle<String>,
    seen: Vec<String>,
}

impl Client {
    fn spawn(script: &str, args: &[&str]) -> Client {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/clients")
            .join(script);
        let mut child = Command::new(python())
            .arg(&path)
            .args(args)
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", path.display()));
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut err = child.stderr.take().unwrap();
        let stderr = tokio::spawn(async move {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s).await;
            s
        });
        Client {
            child,
            stdout,
            stderr,
            seen: Vec::new(),
        }
    }

    /// The client's next stdout line; fails with all it said if none comes in time.
    async fn line(&mut self) -> String {
        match tokio::time::timeout(CLIENT_PATIENCE, self.stdout.next_line()).await {
            Ok(Ok(Some(line))) => {
                self.seen.push(line.clone());
                line
            }
            Ok(Ok(None)) => self.fail("the client exited").await,
            Ok(Err(e)) => {
                self.fail(&format!("cannot read the client's stdout: {e}"))
                    .await
            }
            Err(_) => {
                self.fail(&format!("the client said nothing for {CLIENT_PATIENCE:?}"))
                    .await
            }
        }
    }

    /// Reads the next line and checks it starts with `word`; returns the rest.
    async fn expect(&mut self, word: &str) -> String {
        let line = self.line().await;
        match line.strip_prefix(word) {
            Some(rest) => rest.trim().to_owned(),
            None => self.fail(&format!("expected `{word}`")).await,
        }
    }

    async fn send(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
    }

    /// The JSON summary the client prints last, once it has exited successfully.
    async fn summary(mut self) -> Value {
        let line = self.line().await;
        let status = tokio::time::timeout(CLIENT_PATIENCE, self.child.wait())
            .await
            .expect("the client exits after its summary")
            .unwrap();
        if !status.success() {
            self.fail(&format!("the client exited with {status}")).await;
        }
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("summary is not JSON ({e}): {line}"))
    }

    async fn fail(&mut self, why: &str) -> ! {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        let stderr = tokio::time::timeout(Duration::from_secs(5), &mut self.stderr)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        panic!(
            "{why}\n--- client stdout ---\n{}\n--- client stderr ---\n{stderr}",
            self.seen.join("\n")
        );
    }
}

/// Publishes on `/hooks/{room}`, named when `event` is set; returns the event id.
async fn publish(app: &TestApp, room: &str, event: Option<&str>, data: &str) -> String {
    let headers: Vec<(&str, &str)> = event.map(|e| ("X-Event", e)).into_iter().collect();
    let r = app
        .post(&format!("/hooks/{room}"), &headers, data.to_owned())
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    r.json()["id"].as_str().unwrap().to_owned()
}

fn event(id: &str, event: &str, data: &str) -> Value {
    json!({ "id": id, "event": event, "data": data })
}

/// httpx-sse follows a stream, hangs up, and resumes with `Last-Event-ID`: it gets
/// exactly the events it missed, in order, then the next live one.
#[tokio::test]
async fn httpx_sse_resumes_with_last_event_id() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let app = TestApp::spawn(&config("")).await;
        let url = app.url("/events?topic=room.lobby");
        let mut client = Client::spawn("httpx_sse_resume.py", &[&url, "3", "4"]);
        client.expect("ready").await;

        let mut first = Vec::new();
        for (i, name) in [None, Some("chat.message"), None].into_iter().enumerate() {
            let data = format!("before {i}");
            let id = publish(&app, "lobby", name, &data).await;
            first.push(event(&id, name.unwrap_or("message"), &data));
        }
        let paused_at = client.expect("paused").await;
        assert_eq!(paused_at, first[2]["id"], "the client's last event id");

        let mut resumed = Vec::new();
        for i in 0..4 {
            // Multi-line data and a leading space must survive replay as they do live.
            let data = if i == 1 {
                " missed\nover two lines".to_owned()
            } else {
                format!("missed {i}")
            };
            let name = (i == 2).then_some("chat.edit");
            let id = publish(&app, "lobby", name, &data).await;
            // Another room's event is no business of this client's.
            publish(&app, "elsewhere", None, "not for lobby").await;
            resumed.push(event(&id, name.unwrap_or("message"), &data));
        }
        client.send("go").await;
        client.expect("replayed").await;

        let id = publish(&app, "lobby", Some("chat.message"), "live after replay").await;
        resumed.push(event(&id, "chat.message", "live after replay"));

        let summary = client.summary().await;
        assert_eq!(summary["first"], json!(first), "{summary:#}");
        assert_eq!(summary["last_id"], first[2]["id"], "{summary:#}");
        assert_eq!(summary["resumed"], json!(resumed), "{summary:#}");
        assert_eq!(summary["status"], json!([200, 200]), "{summary:#}");
        assert_eq!(
            summary["content_type"],
            json!([
                "text/event-stream; charset=utf-8",
                "text/event-stream; charset=utf-8"
            ]),
            "{summary:#}"
        );
        // Each stream opened with the configured `retry: 3s`.
        assert_eq!(summary["retry_ms"], json!([3000, 3000]), "{summary:#}");
        app.shutdown().await;
    })
    .await
    .expect("the client test finishes within 120 s");
}
