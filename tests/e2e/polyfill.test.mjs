// event-source-polyfill (npm), the client of the original brief, in Chromium: it
// resumes with a `lastEventId` query parameter instead of the Last-Event-ID
// header, and it gives up on a connection that is silent for `heartbeatTimeout`.
// Its Authorization header against `subscribers.auth: jwt` is in auth.test.mjs.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';

import { start, DEMO_ROUTES, PATIENCE_MS } from './support/hookcast.mjs';
import { launch } from './support/browser.mjs';
import { openPolyfillPage } from './support/polyfill-page.mjs';

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

/**
 * hookcast with `yaml`, and a page on hookcast's own origin (served from the
 * test assets, see serveAssets) with the polyfill loaded.
 */
async function setup(t, yaml) {
  const app = await start(yaml);
  t.after(() => app.stop());
  const { page, streams } = await openPolyfillPage(t, browser, app);
  const seen = () => page.evaluate(() => window.seen);
  const waitFor = (fn, arg, timeout = PATIENCE_MS) => page.waitForFunction(fn, arg, { timeout });
  return { app, page, streams, seen, waitFor };
}

test('event-source-polyfill resumes with lastEventId in the query and misses nothing', async (t) => {
  const { app, page, streams, seen, waitFor } = await setup(
    t,
    `
sse:
  retry: 300ms
  max_stream_duration: 2s
${DEMO_ROUTES}`,
  );
  await page.evaluate((url) => window.subscribe(url, { names: ['greeting'] }), app.url('/events?topic=demo.lobby'));
  await waitFor(() => window.seen.opens === 1);

  const sent = [];
  const publish = async (data, name) => {
    const id = await app.publish('/hooks/demo/lobby', data, name ? { 'X-Event': name } : {});
    sent.push({ id, name: name ?? 'message', data });
  };
  const deadline = Date.now() + 30_000;
  for (let i = 0; streams.length < 3; i++) {
    assert.ok(Date.now() < deadline, `only ${streams.length} connections in 30 s`);
    if (i % 5 === 1) await publish(`line one of ${i}\n line two\n\nline four`, 'greeting');
    else await publish(JSON.stringify({ n: i }));
    await sleep(50);
  }
  await publish('{"last":true}');
  // The stream is in order, so a doubled event would have come before this one.
  await waitFor((id) => window.seen.events.some((e) => e.id === id), sent.at(-1).id);
  const s = await seen();
  assert.deepEqual(s.events, sent);

  assert.ok(!streams[0].url.searchParams.has('lastEventId'));
  for (const r of streams.slice(1)) {
    const last = r.url.searchParams.get('lastEventId');
    assert.ok(sent.some((e) => e.id === last), `a reconnect asked for lastEventId=${last}, an id it had`);
    assert.equal(r.headers['last-event-id'], undefined, 'the polyfill sends the id in the query only');
    assert.deepEqual(r.url.searchParams.getAll('topic'), ['demo.lobby']);
  }
  // Each end of stream is one error (readyState CONNECTING) and one reconnect.
  assert.ok(s.opens >= 3 && s.errors.every((e) => e.readyState === 0), JSON.stringify(s));
});

// The polyfill drops a connection that stays silent for heartbeatTimeout (45 s by
// default) and reconnects. hookcast's comment heartbeats keep it alive. To keep
// CI short both are scaled down by the same factor: heartbeatTimeout 3 s against
// a 1 s heartbeat, watched for 7 s, which is more than two timeouts long.
test('event-source-polyfill is not cut by its heartbeatTimeout when events are rare', async (t) => {
  const { app, page, streams, seen, waitFor } = await setup(
    t,
    `
sse:
  heartbeat: 1s
${DEMO_ROUTES}`,
  );
  await page.evaluate((url) => window.subscribe(url, { heartbeatTimeout: 3000 }), app.url('/events?topic=demo.lobby'));
  await waitFor(() => window.seen.opens === 1);
  const first = await app.publish('/hooks/demo/lobby', '{"n":1}');
  await waitFor(() => window.seen.events.length === 1);

  await sleep(7000);
  const later = await app.publish('/hooks/demo/lobby', '{"n":2}');
  await waitFor(() => window.seen.events.length === 2);
  const s = await seen();
  assert.deepEqual(s.errors, [], 'no "No activity within 3000 milliseconds" error');
  assert.equal(s.opens, 1);
  assert.equal(streams.length, 1, 'one connection, never reconnected');
  assert.deepEqual(
    s.events.map((e) => e.id),
    [first, later],
  );
});

// The control for the test above: with hookcast's heartbeat longer than the
// polyfill's timeout, the polyfill does give up on the silent connection, so the
// test above would notice heartbeats that do not arrive. It then resumes by query.
test('event-source-polyfill reconnects when heartbeats are rarer than its heartbeatTimeout, and resumes', async (t) => {
  const { app, page, streams, seen, waitFor } = await setup(
    t,
    `
sse:
  heartbeat: 1h
  retry: 100ms
${DEMO_ROUTES}`,
  );
  await page.evaluate((url) => window.subscribe(url, { heartbeatTimeout: 1500 }), app.url('/events?topic=demo.lobby'));
  await waitFor(() => window.seen.opens === 1);
  const first = await app.publish('/hooks/demo/lobby', '{"n":1}');
  await waitFor(() => window.seen.events.length === 1);

  await waitFor(() => window.seen.errors.length >= 1);
  const missed = await app.publish('/hooks/demo/lobby', '{"n":2}');
  await waitFor(() => window.seen.events.length === 2);
  const s = await seen();
  assert.match(s.errors[0].message, /^No activity within 1500 milliseconds/);
  assert.deepEqual(
    s.events.map((e) => e.id),
    [first, missed],
  );
  assert.equal(streams[1].url.searchParams.get('lastEventId'), first);
});
