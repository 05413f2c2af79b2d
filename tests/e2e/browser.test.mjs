// Chromium's own EventSource on the demo page (/_hookcast/): live events, named
// events, multi-line data, heartbeats, the page's webhook form, a screenshot, and
// reconnect + replay (or hookcast.resync) when hookcast ends the stream.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { start, DEMO_ROUTES, ROOT, PATIENCE_MS } from './support/hookcast.mjs';
import { launch, recordStreams } from './support/browser.mjs';
import { demoUrl, rows, shown, waitForRow, waitForRows, waitForState } from './support/demo.mjs';

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

/** A fresh page (its own context: no shared cookies or connections) closed after the test. */
async function newPage(t) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  t.after(() => context.close());
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  t.after(() => assert.deepEqual(errors, [], 'the page threw or logged an error'));
  return page;
}

/** Saves a screenshot of the page (animations finished) in a temp dir; returns its path. */
async function screenshot(page, name) {
  const path = join(mkdtempSync(join(tmpdir(), 'hookcast-shot-')), name);
  await page.screenshot({ path, animations: 'disabled' });
  return path;
}

async function hookcast(t, yaml) {
  const app = await start(yaml);
  t.after(() => app.stop());
  return app;
}

test('native EventSource on the demo page: live, named and multi-line events, heartbeats, the webhook form', async (t) => {
  const app = await hookcast(
    t,
    `
sse:
  heartbeat: 1s
${DEMO_ROUTES}`,
  );
  const page = await newPage(t);
  const streams = recordStreams(page);
  // Chromium's network events show what reaches the page's stream, comments included.
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.enable');
  const streamIds = new Set();
  let streamChunks = 0;
  cdp.on('Network.requestWillBeSent', (e) => {
    if (new URL(e.request.url).pathname === '/events') streamIds.add(e.requestId);
  });
  cdp.on('Network.dataReceived', (e) => {
    if (streamIds.has(e.requestId)) streamChunks++;
  });

  await page.goto(demoUrl(app, ['demo.lobby'], ['greeting']));
  await waitForState(page, 'open');
  assert.deepEqual(await page.getByTestId('topic-chips').locator('.chip').allTextContents(), ['demo.lobby']);

  const sent = [];
  const post = async (data, name) => {
    const id = await app.publish('/hooks/demo/lobby', data, name ? { 'X-Event': name } : {});
    sent.push({ id, name: name ?? 'message', data: shown(data) });
    await waitForRow(page, id);
  };
  await post(JSON.stringify({ message: 'hello', n: 1, tags: ['a', 'b'] }));
  // A named event reaches the page only through addEventListener('greeting').
  await post(JSON.stringify({ message: 'hi there', from: 'node' }), 'greeting');
  // Several data: lines, an empty one and a leading space included, arrive as one value.
  await post('first line\n second line, indented\n\nafter an empty line');
  // Another room's event must not show up.
  await app.publish('/hooks/demo/kitchen', '{"not":"for lobby"}');
  assert.deepEqual(await rows(page), sent);
  assert.equal(await page.getByTestId('count').textContent(), '3 received');
  assert.equal(await page.getByTestId('last-id').textContent(), sent.at(-1).id);

  // Nothing to send for more than three heartbeat intervals: the stream stays up on
  // heartbeats alone (Chromium has no idle timeout of its own, so the proof is that
  // the comments arrive and the same connection delivers the next event).
  const chunksBefore = streamChunks;
  await sleep(3500);
  assert.ok(streamChunks - chunksBefore >= 2, `heartbeats reached the browser (${streamChunks - chunksBefore} chunks)`);
  assert.equal(await page.getByTestId('state').getAttribute('data-state'), 'open');
  await post(JSON.stringify({ message: 'still here after the quiet', n: 2 }));
  assert.equal(streams.length, 1, 'one connection, never reconnected');

  // The page's own form posts a webhook, shows the answer, and the event arrives.
  await page.getByTestId('send-event').fill('greeting');
  await page.getByTestId('send-body').fill('{"message":"sent from the form","n":3}');
  await page.getByTestId('send').click();
  await page.getByTestId('send-result').getByText('202').waitFor({ timeout: PATIENCE_MS });
  const answer = JSON.parse(await page.getByTestId('send-result').locator('pre').textContent());
  assert.deepEqual(answer.topics, ['demo.lobby']);
  await waitForRow(page, answer.id);
  sent.push({ id: answer.id, name: 'greeting', data: shown('{"message":"sent from the form","n":3}') });
  assert.deepEqual(await rows(page), sent);

  // The README's picture. Always taken (a broken page shows in the file); copied
  // into docs/ only when asked, so a test run leaves the work tree alone.
  const shot = await screenshot(page, 'demo.png');
  if (process.env.HOOKCAST_SCREENSHOT === '1') copyFileSync(shot, join(ROOT, 'docs/demo.png'));
  t.diagnostic(`screenshot: ${shot}`);
});

test('the browser reconnects by itself with Last-Event-ID and the page gets every event once, in order', async (t) => {
  // hookcast ends every stream after ~2 s (less up to 10 % jitter), with a
  // retry hint of 300-600 ms; events keep coming, across the cuts.
  const app = await hookcast(
    t,
    `
sse:
  retry: 300ms
  max_stream_duration: 2s
${DEMO_ROUTES}`,
  );
  const page = await newPage(t);
  const streams = recordStreams(page);
  await page.goto(demoUrl(app, ['demo.lobby']));
  await waitForState(page, 'open');

  const sent = [];
  const deadline = Date.now() + 30_000;
  // Publish until the browser has reconnected twice, and while it is reconnecting.
  while (streams.length < 3) {
    assert.ok(Date.now() < deadline, `only ${streams.length} connections in 30 s`);
    const data = JSON.stringify({ n: sent.length });
    sent.push({ id: await app.publish('/hooks/demo/lobby', data), name: 'message', data: shown(data) });
    await sleep(50);
  }
  for (let i = 0; i < 3; i++) {
    const data = JSON.stringify({ n: sent.length });
    sent.push({ id: await app.publish('/hooks/demo/lobby', data), name: 'message', data: shown(data) });
  }
  await waitForRow(page, sent.at(-1).id);
  assert.deepEqual(await rows(page), sent);

  assert.equal(streams[0].headers['last-event-id'], undefined, 'the first request has no Last-Event-ID');
  for (const s of streams.slice(1)) {
    const last = s.headers['last-event-id'];
    assert.ok(sent.some((e) => e.id === last), `a reconnect sent Last-Event-ID ${last} of an event it had`);
  }
});

test('an id that can no longer be replayed: the page receives hookcast.resync, then live events', async (t) => {
  // history: 2 per topic. The stream is cut after ~2 s with a retry hint of 2-4 s;
  // five events published in that gap push the page's last event out of history.
  const app = await hookcast(
    t,
    `
sse:
  retry: 2s
  history: 2
  max_stream_duration: 2s
${DEMO_ROUTES}`,
  );
  const page = await newPage(t);
  const streams = recordStreams(page);
  await page.goto(demoUrl(app, ['demo.lobby']));
  await waitForState(page, 'open');
  const first = await app.publish('/hooks/demo/lobby', '{"n":0}');
  await waitForRow(page, first);

  await waitForState(page, 'reconnecting');
  for (let n = 1; n <= 5; n++) await app.publish('/hooks/demo/lobby', JSON.stringify({ n }));
  await waitForRows(page, 2, 3 * PATIENCE_MS);
  await waitForState(page, 'open');
  const live = await app.publish('/hooks/demo/lobby', '{"n":6}');
  await waitForRow(page, live);

  assert.equal(streams[1].headers['last-event-id'], first);
  const got = await rows(page);
  assert.deepEqual(
    got.map((r) => [r.id, r.name]),
    [
      [first, 'message'],
      ['—', 'hookcast.resync'],
      [live, 'message'],
    ],
  );
  assert.deepEqual(JSON.parse(got[1].data), {
    reason: 'history_trimmed',
    last_event_id: first,
    topics: ['demo.lobby'],
  });
  assert.equal(await page.locator('.ev.resync .notice').count(), 1, 'the resync row explains itself');
  // The resync event has no id, so the browser keeps the last real one.
  assert.equal(await page.getByTestId('last-id').textContent(), live);
  t.diagnostic(`screenshot: ${await screenshot(page, 'resync.png')}`);
});
