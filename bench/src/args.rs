//! Command-line options: parsing, defaults, checks, and back to argv for child processes.

use std::time::Duration;

use crate::Error;

pub const USAGE: &str = "\
hookcast-load — load generator for Server-Sent Events servers (loopback only)

Usage:
  hookcast-load [OPTIONS]

Subscribers:
  --sub-url URL             subscribe URL template, e.g. 'http://127.0.0.1:8080/events?topic={topic}'
  --subscribers N           subscriber connections (default 0)
  --topics K                topics; subscriber i follows topic i % K (default 1)
  --topic-template T        topic names, {i} = 0..K-1 (default 'bench.{i}')
  --procs P                 split subscribers over P child processes (default 1)
  --connect-concurrency C   connections opening at once, over all processes (default 100)
  --source-addrs A          bind subscriber sockets to A source addresses 127.0.0.2.. (default 100; 0: don't bind)
  --sub-header 'Name: v'    extra subscribe request header (repeatable)

Publishers:
  --pub-url URL             webhook URL template, e.g. 'http://127.0.0.1:8080/hooks/{topic}'
  --events M                webhooks to send, round-robin over the topics (default 0)
  --rate R|max              webhooks per second over all publishers (default max)
  --pub-concurrency C       keep-alive publisher connections (default 1)
  --body T                  body template (default '{\"seq\":{seq},\"ts_ns\":{ts_ns},\"topic\":\"{topic}\"}')
  --header 'Name: v'        extra webhook header (repeatable; Content-Type defaults to application/json)
  --request-timeout D       per webhook (default 10s)

Measurement and safety:
  --server-pid PID          sample this process and its descendants (repeatable)
  --settle D                wait after connecting, before sampling and publishing (default 1s)
  --drain D                 wait after publishing for deliveries (default 2s; ends early when all arrived)
  --duration-limit D        time limit of each phase (default 120s)
  --quiet                   no progress on stderr
  --help, --version

Templates: {topic}, {i} (topic index), {seq} (per topic, from 1), {ts_ns} (unix ns at send),
{n} (event number). Subscribers read \"seq\" and \"ts_ns\" as JSON numbers from each event's data.
Durations: 500ms, 2s, 1.5m, or seconds. Targets must be loopback: 127.0.0.0/8, [::1], localhost.
Prints one JSON summary on stdout. Exit codes: 0 done, 1 runtime failure, 2 bad usage or target.";

/// Webhook rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    Max,
    PerSecond(f64),
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rate::Max => f.write_str("max"),
            Rate::PerSecond(r) => write!(f, "{r}"),
        }
    }
}

/// Everything a run needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub sub_url: Option<String>,
    pub subscribers: usize,
    pub topics: usize,
    pub topic_template: String,
    pub procs: usize,
    pub connect_concurrency: usize,
    pub source_addrs: usize,
    pub sub_headers: Vec<String>,
    pub pub_url: Option<String>,
    pub events: u64,
    pub rate: Rate,
    pub pub_concurrency: usize,
    pub body: String,
    pub headers: Vec<String>,
    pub request_timeout: Duration,
    pub server_pids: Vec<u32>,
    pub settle: Duration,
    pub drain: Duration,
    pub duration_limit: Duration,
    pub quiet: bool,
    /// Set in child processes: this child's subscribers are `start..start + count`.
    pub child: Option<(usize, usize)>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            sub_url: None,
            subscribers: 0,
            topics: 1,
            topic_template: "bench.{i}".into(),
            procs: 1,
            connect_concurrency: 100,
            source_addrs: 100,
            sub_headers: Vec::new(),
            pub_url: None,
            events: 0,
            rate: Rate::Max,
            pub_concurrency: 1,
            body: r#"{"seq":{seq},"ts_ns":{ts_ns},"topic":"{topic}"}"#.into(),
            headers: Vec::new(),
            request_timeout: Duration::from_secs(10),
            server_pids: Vec::new(),
            settle: Duration::from_secs(1),
            drain: Duration::from_secs(2),
            duration_limit: Duration::from_secs(120),
            quiet: false,
            child: None,
        }
    }
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Run(Box<Config>),
    Help,
    Version,
}

/// Parses a duration: `500ms`, `2s`, `1.5m`, `1h`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("bad duration `{s}`"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("bad duration unit in `{s}` (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("bad duration `{s}`"))
}

fn fmt_duration(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, Error> {
    v.parse()
        .map_err(|_| Error::Usage(format!("{flag}: `{v}` is not a valid number")))
}

fn header(flag: &str, v: String) -> Result<String, Error> {
    match v.split_once(':') {
        Some((n, _)) if !n.trim().is_empty() && !v.contains(['\r', '\n']) => Ok(v),
        _ => Err(Error::Usage(format!("{flag}: `{v}` is not `Name: value`"))),
    }
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, Error> {
    let mut c = Config::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        match flag.as_str() {
            "--help" | "-h" => return Ok(Command::Help),
            "--version" | "-V" => return Ok(Command::Version),
            "--quiet" | "-q" => {
                c.quiet = true;
                continue;
            }
            _ => {}
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| Error::Usage(format!("{flag} needs a value")))
        };
        let f = flag.as_str();
        match f {
            "--sub-url" => c.sub_url = Some(value()?),
            "--subscribers" => c.subscribers = number(f, &value()?)?,
            "--topics" => c.topics = number(f, &value()?)?,
            "--topic-template" => c.topic_template = value()?,
            "--procs" => c.procs = number(f, &value()?)?,
            "--connect-concurrency" => c.connect_concurrency = number(f, &value()?)?,
            "--source-addrs" => c.source_addrs = number(f, &value()?)?,
            "--sub-header" => c.sub_headers.push(header(f, value()?)?),
            "--pub-url" => c.pub_url = Some(value()?),
            "--events" => c.events = number(f, &value()?)?,
            "--rate" => {
                let v = value()?;
                c.rate = if v == "max" {
                    Rate::Max
                } else {
                    Rate::PerSecond(number(f, &v)?)
                };
            }
            "--pub-concurrency" => c.pub_concurrency = number(f, &value()?)?,
            "--body" => c.body = value()?,
            "--header" => c.headers.push(header(f, value()?)?),
            "--server-pid" => c.server_pids.push(number(f, &value()?)?),
            "--request-timeout" | "--settle" | "--drain" | "--duration-limit" => {
                let d = parse_duration(&value()?).map_err(|e| Error::Usage(format!("{f}: {e}")))?;
                match f {
                    "--request-timeout" => c.request_timeout = d,
                    "--settle" => c.settle = d,
                    "--drain" => c.drain = d,
                    _ => c.duration_limit = d,
                }
            }
            "--child" => {
                let v = value()?;
                let (s, n) = v
                    .split_once(':')
                    .ok_or_else(|| Error::Usage("--child needs START:COUNT".into()))?;
                c.child = Some((number(f, s)?, number(f, n)?));
            }
            _ => {
                return Err(Error::Usage(format!(
                    "unknown argument `{arg}` (see --help)"
                )));
            }
        }
    }
    c.check()?;
    Ok(Command::Run(Box::new(c)))
}

impl Config {
    /// Checks values that do not need the network; the URLs are checked when a run starts.
    pub fn check(&self) -> Result<(), Error> {
        let bad = |m: &str| Err(Error::Usage(m.to_owned()));
        if self.topics == 0 {
            return bad("--topics must be at least 1");
        }
        if self.procs == 0 {
            return bad("--procs must be at least 1");
        }
        if self.subscribers > 0 && self.procs > self.subscribers {
            return bad("--procs must not exceed --subscribers");
        }
        if self.subscribers > 0 && self.sub_url.is_none() {
            return bad("--subscribers needs --sub-url");
        }
        if self.events > 0 && self.pub_url.is_none() {
            return bad("--events needs --pub-url");
        }
        if self.connect_concurrency == 0 || self.pub_concurrency == 0 {
            return bad("concurrency must be at least 1");
        }
        if let Rate::PerSecond(r) = self.rate
            && !(r.is_finite() && r > 0.0)
        {
            return bad("--rate must be a positive number or `max`");
        }
        if self.duration_limit.is_zero() {
            return bad("--duration-limit must be positive");
        }
        Ok(())
    }

    /// The arguments that make a child process run subscribers `start..start + count`
    /// with this configuration (publishing and sampling stay in the parent).
    pub fn child_argv(&self, start: usize, count: usize) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |k: &str, v: String| {
            a.push(k.to_owned());
            a.push(v);
        };
        if let Some(u) = &self.sub_url {
            push("--sub-url", u.clone());
        }
        push("--subscribers", self.subscribers.to_string());
        push("--topics", self.topics.to_string());
        push("--topic-template", self.topic_template.clone());
        push("--procs", self.procs.to_string());
        push(
            "--connect-concurrency",
            self.connect_concurrency.div_ceil(self.procs).to_string(),
        );
        push("--source-addrs", self.source_addrs.to_string());
        for h in &self.sub_headers {
            push("--sub-header", h.clone());
        }
        push("--settle", fmt_duration(self.settle));
        push("--drain", fmt_duration(self.drain));
        push("--duration-limit", fmt_duration(self.duration_limit));
        push("--child", format!("{start}:{count}"));
        if self.quiet {
            a.push("--quiet".into());
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &[&str]) -> Vec<String> {
        s.iter().map(|&x| x.to_owned()).collect()
    }

    fn run(s: &[&str]) -> Result<Config, Error> {
        match parse(argv(s))? {
            Command::Run(c) => Ok(*c),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_a_full_command_line() {
        let c = run(&[
            "--sub-url",
            "http://127.0.0.1:8080/events?topic={topic}",
            "--subscribers=2000",
            "--topics",
            "10",
            "--procs",
            "2",
            "--pub-url",
            "http://127.0.0.1:8080/hooks/{topic}",
            "--events",
            "200",
            "--rate",
            "50",
            "--header",
            "X-Event: tick",
            "--server-pid",
            "12",
            "--server-pid",
            "13",
            "--drain",
            "500ms",
            "--duration-limit",
            "1m",
            "-q",
        ])
        .unwrap();
        assert_eq!(c.subscribers, 2000);
        assert_eq!(c.topics, 10);
        assert_eq!(c.rate, Rate::PerSecond(50.0));
        assert_eq!(c.server_pids, [12, 13]);
        assert_eq!(c.drain, Duration::from_millis(500));
        assert_eq!(c.duration_limit, Duration::from_secs(60));
        assert_eq!(c.headers, ["X-Event: tick"]);
        assert!(c.quiet);
    }

    #[test]
    fn child_argv_round_trips() {
        let c = run(&[
            "--sub-url",
            "http://localhost:1/e?t={topic}",
            "--subscribers",
            "30000",
            "--procs",
            "2",
            "--topic-template",
            "room-{i}",
            "--sub-header",
            "Authorization: Bearer x",
            "--settle",
            "1.5s",
        ])
        .unwrap();
        let child = run(&c
            .child_argv(15000, 15000)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>())
        .unwrap();
        assert_eq!(child.child, Some((15000, 15000)));
        assert_eq!(child.connect_concurrency, 50);
        assert_eq!(
            Config {
                child: None,
                connect_concurrency: 100,
                ..child
            },
            c
        );
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            &["--topics", "0"][..],
            &["--subscribers", "5"],
            &["--events", "5"],
            &["--rate", "-1", "--events", "0"],
            &["--subscribers", "x"],
            &["--drain", "2 fortnights"],
            &["--header", "no colon"],
            &["--bogus"],
            &["--sub-url"],
            &[
                "--sub-url",
                "http://127.0.0.1/",
                "--subscribers",
                "2",
                "--procs",
                "3",
            ],
        ] {
            assert!(matches!(run(bad), Err(Error::Usage(_))), "{bad:?}");
        }
        assert_eq!(parse(argv(&["--help"])).unwrap(), Command::Help);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("0.5s").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
