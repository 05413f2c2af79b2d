// The npm `eventsource` package, the EventSource of Node programs, against a real
// hookcast: it receives, and it resumes with the last id, both by itself after
// hookcast ends the stream (Last-Event-ID header) and when a program starts a new
// EventSource from an id it kept (the lastEventId query parameter).
// Python's httpx-sse is covered by tests/clients.rs.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { EventSource } from 'eventsource';

import { start, DEMO_ROUTES, PATIENCE_MS } from './support/hookcast.mjs';

/** An EventSource that records its events and the requests it makes. */
function follow(t, url, names = []) {
  const requests = [];
  const events = [];
  const es = new EventSource(url, {
    fetch: (input, init) => {
      requests.push({ url: new URL(input), headers: new Headers(init.headers) });
      return fetch(input, init);
    },
  });
  t.after(() => es.close());
  const record = (e) => events.push({ id: e.lastEventId, name: e.type, data: e.data });
  for (const name of ['message', 'hookcast.resync', ...names]) es.addEventListener(name, record);
  return { es, requests, events };
}

async function until(what, cond) {
  const deadline = Date.now() + PATIENCE_MS;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

test('npm eventsource receives and resumes with Last-Event-ID after hookcast ends the stream', async (t) => {
  const app = await start(`
sse:
  retry: 200ms
  max_stream_duration: 1s
${DEMO_ROUTES}`);
  t.after(() => app.stop());
  const { es, requests, events } = follow(t, app.url('/events?topic=demo.lobby'), ['greeting']);
  // Open, so subscribed: an event published before would not be for this stream.
  await until('the stream', () => es.readyState === EventSource.OPEN);
  assert.equal(requests.length, 1);

  const sent = [];
  const deadline = Date.now() + 30_000;
  for (let i = 0; requests.length < 3; i++) {
    assert.ok(Date.now() < deadline, `only ${requests.length} connections in 30 s`);
    const name = i % 4 === 1 ? 'greeting' : undefined;
    const data = name ? `multi-line ${i}\n second\n\nfourth` : JSON.stringify({ n: i });
    const id = await app.publish('/hooks/demo/lobby', data, name ? { 'X-Event': name } : {});
    sent.push({ id, name: name ?? 'message', data });
    await sleep(50);
  }
  const last = await app.publish('/hooks/demo/lobby', '{"last":true}');
  sent.push({ id: last, name: 'message', data: '{"last":true}' });
  // In order: anything doubled would come before the last event.
  await until('the last event', () => events.some((e) => e.id === last));
  assert.deepEqual(events, sent);

  assert.equal(requests[0].headers.get('last-event-id'), null);
  for (const r of requests.slice(1)) {
    const id = r.headers.get('last-event-id');
    assert.ok(sent.some((e) => e.id === id), `a reconnect sent Last-Event-ID ${id} of an event it had`);
  }
});

test('npm eventsource started anew from a kept id (lastEventId query) gets what it missed, then live events', async (t) => {
  const app = await start(DEMO_ROUTES);
  t.after(() => app.stop());
  const url = app.url('/events?topic=demo.lobby');
  const first = follow(t, url);
  await until('the stream', () => first.es.readyState === EventSource.OPEN);
  const before = await app.publish('/hooks/demo/lobby', '{"n":0}');
  await until('the first event', () => first.events.length === 1);
  const kept = first.events[0].id;
  first.es.close();

  const missed = [];
  for (let n = 1; n <= 3; n++) missed.push(await app.publish('/hooks/demo/lobby', JSON.stringify({ n })));
  const second = follow(t, `${url}&lastEventId=${encodeURIComponent(kept)}`);
  await until('the replay', () => second.events.length === 3);
  const live = await app.publish('/hooks/demo/lobby', '{"n":4}');
  await until('the live event', () => second.events.length === 4);

  assert.equal(kept, before);
  assert.deepEqual(
    second.events.map((e) => e.id),
    [...missed, live],
  );
});
