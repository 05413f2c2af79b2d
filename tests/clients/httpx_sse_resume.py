"""A real third-party SSE client (httpx-sse) against a running hookcast.

Driven by tests/clients.rs over stdin/stdout, one line at a time:

    stdout "ready"            subscribed: the stream's first bytes came
    (the test publishes BEFORE events)
    stdout "paused <id>"      got BEFORE events and hung up; <id> is the last event id
    stdin  "go"               (the test has published MISSED events meanwhile)
    stdout "replayed"         reconnected with Last-Event-ID, got MISSED events
    (the test publishes one live event)
    stdout {...}              a JSON summary of everything received, then exit 0

Any failure prints {"error": ...} as the last line and exits 1.

usage: httpx_sse_resume.py URL BEFORE MISSED
"""

import json
import sys

import httpx
from httpx_sse import connect_sse

TIMEOUT = httpx.Timeout(10.0)


def say(line):
    print(line, flush=True)


def events(source, summary):
    """Events with data; retry-only blocks (hookcast's stream prelude) are noted apart."""
    for sse in source.iter_sse():
        if sse.retry is not None and sse.data == "":
            summary["retry_ms"].append(sse.retry)
            yield None
            continue
        yield {"event": sse.event, "id": sse.id, "data": sse.data}


def take(stream, n):
    got = []
    for ev in stream:
        if ev is not None:
            got.append(ev)
            if len(got) == n:
                return got
    raise RuntimeError(f"the stream ended after {len(got)} of {n} events: {got}")


def main():
    url, before, missed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    summary = {"retry_ms": [], "status": [], "content_type": []}
    with httpx.Client(timeout=TIMEOUT, trust_env=False) as client:
        with connect_sse(client, "GET", url) as source:
            summary["status"].append(source.response.status_code)
            summary["content_type"].append(source.response.headers.get("content-type"))
            stream = events(source, summary)
            if next(stream) is not None:
                raise RuntimeError("the stream did not start with a retry hint")
            say("ready")
            summary["first"] = take(stream, before)
        last_id = summary["first"][-1]["id"]
        summary["last_id"] = last_id
        say(f"paused {last_id}")

        if sys.stdin.readline().strip() != "go":
            raise RuntimeError("expected 'go' on stdin")

        headers = {"Last-Event-ID": last_id}
        with connect_sse(client, "GET", url, headers=headers) as source:
            summary["status"].append(source.response.status_code)
            summary["content_type"].append(source.response.headers.get("content-type"))
            stream = events(source, summary)
            summary["resumed"] = take(stream, missed)
            say("replayed")
            summary["resumed"] += take(stream, 1)
    say(json.dumps(summary))


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # reported to the Rust test, which fails with it
        say(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        sys.exit(1)
