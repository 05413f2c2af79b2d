//! The phases of a run (connect, settle, publish, drain) and the parent/child protocol when subscribers span processes.
//!
//! A child process runs `start..start + count` of the subscribers. It prints one JSON
//! line, a [`ConnectReport`], once they are connected; then it reads one JSON line
//! from stdin, what each topic was sent (`[Accepted]`), stops, and prints its
//! [`SubResult`] as one JSON line. EOF on stdin makes it exit.

use std::process::Stdio;
use std::rc::Rc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::task::LocalSet;
use tokio::time::Instant;

use crate::args::Config;
use crate::http::Target;
use crate::subscribers::{self, Subscribers};
use crate::summary::{Accepted, ConnectReport, Echo, Measured, PubResult, SubResult, Summary};
use crate::template::{self, Template};
use crate::{Error, procstat, publishers};

/// Sockets and descriptors a process keeps for itself besides subscribers.
const RESERVED_FDS: u64 = 64;

/// What the configuration resolves to.
#[derive(Debug)]
struct Plan {
    sub: Option<Target>,
    publish: Option<Target>,
    topics: Rc<[String]>,
    body: Template,
    pub_headers: String,
    sub_headers: String,
}

impl Plan {
    fn new(cfg: &Config) -> Result<Plan, Error> {
        cfg.check()?;
        let target = |u: &Option<String>| u.as_deref().map(Target::parse).transpose();
        let mut pub_headers = String::new();
        for h in &cfg.headers {
            pub_headers.push_str(h);
            pub_headers.push_str("\r\n");
        }
        if !cfg
            .headers
            .iter()
            .any(|h| h.to_ascii_lowercase().starts_with("content-type:"))
        {
            pub_headers.push_str("Content-Type: application/json\r\n");
        }
        Ok(Plan {
            sub: target(&cfg.sub_url)?,
            publish: target(&cfg.pub_url)?,
            topics: template::topic_names(&cfg.topic_template, cfg.topics).into(),
            body: Template::parse(&cfg.body),
            pub_headers,
            sub_headers: cfg.sub_headers.iter().map(|h| format!("{h}\r\n")).collect(),
        })
    }

    fn subscribers(&self, cfg: &Config, start: usize, count: usize) -> Option<Subscribers> {
        let target = self.sub.clone()?;
        Some(Subscribers::start(subscribers::Spec {
            target,
            topics: self.topics.clone(),
            extra_headers: self.sub_headers.clone(),
            start,
            count,
            source_addrs: cfg.source_addrs,
            concurrency: cfg.connect_concurrency,
            deadline: Instant::now() + cfg.duration_limit,
        }))
    }
}

/// Raises the open-file soft limit to the hard limit, and checks `needed` fits.
fn raise_nofile(needed: u64) -> Result<(), Error> {
    let limit = rlimit::increase_nofile_limit(u64::MAX)
        .map_err(|e| Error::Runtime(format!("cannot raise the open-file limit: {e}")))?;
    if needed + RESERVED_FDS > limit {
        return Err(Error::Usage(format!(
            "{needed} sockets in one process do not fit the open-file limit {limit}: \
             use more --procs (each holds --subscribers / --procs)"
        )));
    }
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Runtime(format!("cannot start the runtime: {e}")))
}

/// Runs the whole benchmark and returns its summary. Blocks; starts its own
/// single-threaded runtime. With `procs > 1` it re-runs the current executable as
/// child processes, so that only works from the `hookcast-load` binary.
pub fn run(cfg: &Config) -> Result<Summary, Error> {
    let plan = Plan::new(cfg)?;
    let own = if cfg.procs == 1 { cfg.subscribers } else { 0 };
    raise_nofile((own + cfg.pub_concurrency + 2 * cfg.procs) as u64)?;
    LocalSet::new().block_on(&runtime()?, parent(cfg, plan))
}

/// The child side of [`run`]: `cfg.child` says which subscribers.
pub fn run_child(cfg: &Config) -> Result<(), Error> {
    let (start, count) = cfg
        .child
        .ok_or_else(|| Error::Usage("not a child configuration".into()))?;
    let plan = Plan::new(cfg)?;
    raise_nofile(count as u64)?;
    LocalSet::new().block_on(&runtime()?, child(cfg, plan, start, count))
}

async fn child(cfg: &Config, plan: Plan, start: usize, count: usize) -> Result<(), Error> {
    let subs = plan
        .subscribers(cfg, start, count)
        .ok_or_else(|| Error::Usage("--sub-url is required".into()))?;
    let report = subs.connected().await;
    let mut out = tokio::io::stdout();
    write_line(&mut out, &report).await?;
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    // The parent publishes, drains and then writes; this is only a backstop.
    let wait = cfg.settle + 2 * cfg.duration_limit + cfg.drain + Duration::from_secs(60);
    let line = match tokio::time::timeout(wait, stdin.next_line()).await {
        Ok(Ok(Some(line))) => line,
        Ok(_) => return Err(Error::Runtime("the parent process went away".into())),
        Err(_) => return Err(Error::Runtime("no word from the parent process".into())),
    };
    let accepted: Vec<Accepted> = serde_json::from_str(&line)
        .map_err(|e| Error::Runtime(format!("bad message from the parent: {e}")))?;
    write_line(&mut out, &subs.finish(&accepted)).await
}

async fn write_line(out: &mut tokio::io::Stdout, v: &impl serde::Serialize) -> Result<(), Error> {
    let mut line = serde_json::to_vec(v).map_err(|e| Error::Runtime(e.to_string()))?;
    line.push(b'\n');
    out.write_all(&line)
        .await
        .and(out.flush().await)
        .map_err(|e| Error::Runtime(format!("cannot write to the parent: {e}")))
}

/// A child process running some of the subscribers.
#[derive(Debug)]
struct Worker {
    process: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Worker {
    async fn read<T: serde::de::DeserializeOwned>(&mut self, until: Instant) -> Result<T, Error> {
        let pid = self.process.id().unwrap_or(0);
        match tokio::time::timeout_at(until, self.stdout.next_line()).await {
            Ok(Ok(Some(line))) => serde_json::from_str(&line)
                .map_err(|e| Error::Runtime(format!("child {pid} sent bad JSON: {e}"))),
            Ok(_) => Err(Error::Runtime(format!(
                "child {pid} exited early (see its error above)"
            ))),
            Err(_) => Err(Error::Runtime(format!(
                "child {pid} did not answer in time"
            ))),
        }
    }
}

/// The subscribers of a run: none, in this process, or in child processes.
#[derive(Debug)]
enum Subs {
    None,
    Local(Subscribers),
    Children(Vec<Worker>),
}

impl Subs {
    fn spawn_children(cfg: &Config) -> Result<Subs, Error> {
        let exe = std::env::current_exe()
            .map_err(|e| Error::Runtime(format!("cannot find this executable: {e}")))?;
        let (n, p) = (cfg.subscribers, cfg.procs);
        let mut workers = Vec::with_capacity(p);
        for k in 0..p {
            let start = k * n / p;
            let count = (k + 1) * n / p - start;
            let mut process = tokio::process::Command::new(&exe)
                .args(cfg.child_argv(start, count))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| Error::Runtime(format!("cannot start a child process: {e}")))?;
            let (Some(stdin), Some(stdout)) = (process.stdin.take(), process.stdout.take()) else {
                return Err(Error::Runtime("child process without pipes".into()));
            };
            workers.push(Worker {
                process,
                stdin,
                stdout: BufReader::new(stdout).lines(),
            });
        }
        Ok(Subs::Children(workers))
    }

    async fn connected(&mut self, until: Instant) -> Result<ConnectReport, Error> {
        match self {
            Subs::None => Ok(ConnectReport::default()),
            Subs::Local(s) => Ok(s.connected().await),
            Subs::Children(ws) => {
                let mut total = ConnectReport::default();
                for w in ws {
                    let r: ConnectReport = w.read(until).await?;
                    total.connected += r.connected;
                    total.failed += r.failed;
                    total.connect_s = total.connect_s.max(r.connect_s);
                    total.timed_out |= r.timed_out;
                }
                Ok(total)
            }
        }
    }

    async fn finish(self, accepted: &[Accepted], until: Instant) -> Result<SubResult, Error> {
        match self {
            Subs::None => Ok(SubResult::default()),
            Subs::Local(s) => Ok(s.finish(accepted)),
            Subs::Children(mut ws) => {
                let mut msg =
                    serde_json::to_vec(accepted).map_err(|e| Error::Runtime(e.to_string()))?;
                msg.push(b'\n');
                for w in &mut ws {
                    w.stdin
                        .write_all(&msg)
                        .await
                        .map_err(|e| Error::Runtime(format!("cannot reach a child: {e}")))?;
                }
                let mut total = SubResult::default();
                for w in &mut ws {
                    total.merge(&w.read::<SubResult>(until).await?);
                }
                for mut w in ws {
                    drop(w.stdin);
                    let _ = tokio::time::timeout_at(until, w.process.wait()).await;
                }
                Ok(total)
            }
        }
    }
}

fn echo(cfg: &Config) -> Echo {
    Echo {
        sub_url: cfg.sub_url.clone(),
        pub_url: cfg.pub_url.clone(),
        subscribers: cfg.subscribers,
        topics: cfg.topics,
        procs: cfg.procs,
        events: cfg.events,
        rate: cfg.rate.to_string(),
        pub_concurrency: cfg.pub_concurrency,
    }
}

async fn parent(cfg: &Config, plan: Plan) -> Result<Summary, Error> {
    let say = |msg: String| {
        if !cfg.quiet {
            eprintln!("hookcast-load: {msg}");
        }
    };
    let me = [std::process::id()];
    let server = || {
        (!cfg.server_pids.is_empty())
            .then(|| procstat::sample(&cfg.server_pids))
            .flatten()
    };
    let mut m = Measured {
        server_pids: cfg.server_pids.clone(),
        ..Measured::default()
    };
    m.server[0] = server();
    m.tool[0] = procstat::sample(&me);
    if !cfg.server_pids.is_empty() && m.server[0].is_none() {
        say(format!(
            "warning: no live process among --server-pid {:?}",
            cfg.server_pids
        ));
    }
    if cfg.events > 0 && !plan.body.uses(template::Var::Seq) {
        say("warning: the body has no {seq}: lost and reordered cannot be counted".into());
    }

    // Connect.
    let limit = cfg.duration_limit;
    let mut subs = if cfg.subscribers == 0 {
        Subs::None
    } else if cfg.procs == 1 {
        Subs::Local(
            plan.subscribers(cfg, 0, cfg.subscribers)
                .ok_or_else(|| Error::Usage("--sub-url is required".into()))?,
        )
    } else {
        Subs::spawn_children(cfg)?
    };
    if cfg.subscribers > 0 {
        say(format!(
            "connecting {} subscribers on {} topics in {} process(es)",
            cfg.subscribers, cfg.topics, cfg.procs
        ));
    }
    let grace = Duration::from_secs(10);
    let report = subs.connected(Instant::now() + limit + grace).await?;
    if cfg.subscribers > 0 {
        say(format!(
            "connected {} (failed {}) in {:.3}s{}",
            report.connected,
            report.failed,
            report.connect_s,
            if report.timed_out {
                ", time limit reached"
            } else {
                ""
            }
        ));
    }
    if report.timed_out {
        m.timed_out.push("connect".into());
    }

    // Settle, then the "after connect" readings.
    let t = Instant::now();
    tokio::time::sleep(cfg.settle).await;
    m.settle_s = t.elapsed().as_secs_f64();
    m.server[1] = server();
    m.tool[1] = procstat::sample(&me);

    // Publish.
    let t = Instant::now();
    let pubs = match &plan.publish {
        Some(target) if cfg.events > 0 => {
            say(format!(
                "publishing {} events at rate {}",
                cfg.events, cfg.rate
            ));
            publishers::publish(publishers::Spec {
                target: target.clone(),
                topics: plan.topics.clone(),
                body: plan.body.clone(),
                headers: plan.pub_headers.clone(),
                events: cfg.events,
                rate: cfg.rate,
                concurrency: cfg.pub_concurrency,
                request_timeout: cfg.request_timeout,
                deadline: Instant::now() + limit,
            })
            .await
        }
        _ => PubResult {
            accepted_seqs: vec![Accepted::default(); cfg.topics],
            ..PubResult::default()
        },
    };
    m.publish_s = t.elapsed().as_secs_f64();
    if cfg.events > 0 {
        say(format!(
            "published {} (accepted {}) in {:.3}s{}",
            pubs.sent,
            pubs.accepted,
            m.publish_s,
            if pubs.timed_out {
                ", time limit reached"
            } else {
                ""
            }
        ));
    }
    if pubs.timed_out {
        m.timed_out.push("publish".into());
    }

    // Drain: in one process, until every accepted event has reached every subscriber.
    let t = Instant::now();
    match &subs {
        Subs::Local(s) => {
            let expected: u64 = s
                .open_per_topic(cfg.topics)
                .iter()
                .zip(&pubs.accepted_seqs)
                .map(|(n, a)| n * a.count())
                .sum();
            while s.fresh() < expected && t.elapsed() < cfg.drain {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        Subs::Children(_) if cfg.events > 0 => tokio::time::sleep(cfg.drain).await,
        _ => {}
    }
    m.drain_s = t.elapsed().as_secs_f64();
    m.server[2] = server();
    m.tool[2] = procstat::sample(&me);

    m.subs = subs
        .finish(&pubs.accepted_seqs, Instant::now() + limit + grace)
        .await?;
    m.subs.requested = cfg.subscribers as u64;
    m.pubs = pubs;
    let summary = Summary::build(echo(cfg), &m);
    let busy = summary.load_tool.cpu_cores_publish;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let processes = if cfg.procs > 1 { cfg.procs + 1 } else { 1 };
    if busy > 0.8 * cores.min(processes) as f64 {
        say(format!(
            "warning: the load tool used {busy:.2} cores while publishing; it may be the bottleneck"
        ));
    }
    Ok(summary)
}
