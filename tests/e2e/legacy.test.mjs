// A legacy front-end, unchanged, in headless Chromium with event-source-polyfill
// from npm: its page comes from a small application through hookcast (same
// origin), and it opens the application's own subscription URLs with its own
// headers, the two shapes of README "In front of an existing app":
//   new EventSourcePolyfill("/matches", {headers: {"x-access-token": …, "org-id": …}})
//   new EventSourcePolyfill("/api/subscribe", {headers: {Authorization: token}, withCredentials: true})
// hookcast serves both as stream routes, asking the application's /api/me who the
// subscriber is. Last, the demo page lists the stream routes and opens one.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { createServer } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';

import { start, check, PATIENCE_MS } from './support/hookcast.mjs';
import { launch, POLYFILL } from './support/browser.mjs';
import { rows, waitForRow, waitForState } from './support/demo.mjs';

/** Who each token is, as the application's /api/me answers. */
const USERS = { 'tok-ann': { id: 1, name: 'ann' }, 'tok-bob': { id: 2, name: 'bob' } };

// The application's page: it knows nothing of hookcast or topics.
const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>legacy app</title>
<script src="/static/eventsource.js"></script>
<script>
  "use strict";
  window.seen = { matches: [], messages: [], opens: 0, errors: [] };
  window.openMatches = (token, org) => {
    const es = new EventSourcePolyfill("/matches", { headers: { "x-access-token": token, "org-id": org } });
    es.onopen = () => { seen.opens++; };
    es.onerror = (e) => { seen.errors.push(e.status); };
    es.addEventListener("matches", (e) => { seen.matches.push(JSON.parse(e.data)); });
  };
  window.openMine = (token) => {
    const es = new EventSourcePolyfill("/api/subscribe", { headers: { Authorization: token }, withCredentials: true });
    es.onopen = () => { seen.opens++; };
    es.onerror = (e) => { seen.errors.push(e.status); if (e.status) es.close(); };
    es.onmessage = (e) => { seen.messages.push(e.data); };
  };
</script>
<body>legacy app</body>
`;

/** The application: its page, its static files, and /api/me; it records what /api/me received. */
async function legacyApp() {
  const asked = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname === '/') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(PAGE);
    } else if (url.pathname === '/static/eventsource.js') {
      res.writeHead(200, { 'Content-Type': 'text/javascript' }).end(POLYFILL);
    } else if (url.pathname === '/api/me') {
      asked.push({ url: req.url, headers: req.headers });
      const user = USERS[req.headers['x-access-token'] ?? req.headers.authorization];
      if (user) res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(user));
      else res.writeHead(401, { 'Content-Type': 'application/json' }).end('{"error":"who are you?"}');
    } else {
      res.writeHead(404).end('not here');
    }
  });
  await new Promise((res) => server.listen(0, '127.0.0.1', res));
  return {
    origin: `http://127.0.0.1:${server.address().port}`,
    asked,
    close: () => new Promise((res) => server.close(res)),
  };
}

const config = (appOrigin) => `
upstream:
  url: "${appOrigin}"
subscribers:
  auth: upstream
  upstream:
    path: /api/me
    pass_headers: [Authorization, x-access-token, org-id]
streams:
  - name: matches
    path: /matches
    topics: ["org.{header:org-id}.matches"]
  - name: mine
    path: /api/subscribe
    topics: ["user.{auth:/id}"]
routes:
  - name: match
    match: { path: "/hooks/matches/{org}" }
    publish:
      topic: "org.{path:org}.matches"
      event: matches
      data: { home: "{json:/home}", score: "{json:/score}" }
  - name: user
    match: { path: "/hooks/users/{id}" }
    publish:
      topic: "user.{path:id}"
`;

const skip = (() => {
  const r = check(config('http://127.0.0.1:1'));
  return r.ok ? undefined : `this hookcast rejects the config: ${r.output.split('\n')[0]}`;
})();

let browser;
before(async () => {
  if (!skip) browser = await launch();
});
after(async () => {
  await browser?.close();
});

/** hookcast in front of the application, and a page per user, each from hookcast's origin. */
async function setup(t) {
  const app = await legacyApp();
  t.after(() => app.close());
  const hookcast = await start(config(app.origin));
  t.after(() => hookcast.stop());
  const page = async () => {
    const context = await browser.newContext();
    t.after(() => context.close());
    const p = await context.newPage();
    const errors = [];
    p.on('pageerror', (e) => errors.push(e.message));
    t.after(() => assert.deepEqual(errors, [], 'the page threw'));
    await p.goto(hookcast.url('/'));
    return p;
  };
  const waitFor = (p, fn, arg) => p.waitForFunction(fn, arg, { timeout: PATIENCE_MS });
  return { app, hookcast, page, waitFor };
}

test('a front-end opening /matches with its own headers gets its org\'s matches events as JSON', { skip }, async (t) => {
  const { app, hookcast, page, waitFor } = await setup(t);
  const p = await page();
  assert.equal(await p.title(), 'legacy app', 'the page came from the application through hookcast');
  await p.evaluate(() => window.openMatches('tok-ann', '7'));
  await waitFor(p, () => window.seen.opens === 1);
  // The auth endpoint got the polyfill's custom headers, and the topic they chose.
  const call = app.asked.at(-1);
  assert.equal(call.headers['x-access-token'], 'tok-ann');
  assert.equal(call.headers['org-id'], '7');
  assert.equal(new URL(call.url, 'http://x').searchParams.get('topic'), 'org.7.matches');

  await hookcast.publish('/hooks/matches/8', JSON.stringify({ home: 'other org', score: [0, 0] }));
  await hookcast.publish('/hooks/matches/7', JSON.stringify({ home: 'Lyon "OL"', score: [2, 1] }));
  await waitFor(p, () => window.seen.matches.length === 1);
  await sleep(200);
  const seen = await p.evaluate(() => window.seen);
  assert.deepEqual(seen.matches, [{ home: 'Lyon "OL"', score: [2, 1] }]);
});

test('two users on /api/subscribe each receive only their own feed, and a wrong token nothing', { skip }, async (t) => {
  const { app, hookcast, page, waitFor } = await setup(t);
  const [ann, bob, stranger] = [await page(), await page(), await page()];
  await ann.evaluate(() => window.openMine('tok-ann'));
  await bob.evaluate(() => window.openMine('tok-bob'));
  await stranger.evaluate(() => window.openMine('tok-wrong'));
  await waitFor(ann, () => window.seen.opens === 1);
  await waitFor(bob, () => window.seen.opens === 1);
  await waitFor(stranger, () => window.seen.errors.length > 0);
  assert.ok(app.asked.every((c) => !new URL(c.url, 'http://x').searchParams.has('topic')), 'no topic= for {auth:} topics');

  await hookcast.publish('/hooks/users/2', 'for bob');
  await hookcast.publish('/hooks/users/1', 'for ann');
  await hookcast.publish('/hooks/users/3', 'for nobody here');
  await waitFor(ann, () => window.seen.messages.length === 1);
  await waitFor(bob, () => window.seen.messages.length === 1);
  await sleep(200);
  assert.deepEqual(await ann.evaluate(() => window.seen.messages), ['for ann']);
  assert.deepEqual(await bob.evaluate(() => window.seen.messages), ['for bob']);
  const s = await stranger.evaluate(() => window.seen);
  assert.deepEqual(s.messages, []);
  assert.equal(s.opens, 0);
  assert.equal(s.errors[0], 401);
});

// The demo page lists the configured stream routes and opens one, with a token
// sent as access_token under subscribers.auth: jwt.
const SECRET = 'e2e-secret-that-is-long-enough-for-hs256';
const JWT_STREAMS = `
subscribers:
  auth: jwt
  jwt: { secret_env: HOOKCAST_JWT_SECRET, algorithms: [HS256] }
streams:
  - name: mine
    path: /me
    topics: ["user.{claim:/sub}"]
  - name: feed
    path: "/feeds/{room}"
    topics: ["demo.{path:room}"]
routes:
  - name: user
    match: { path: "/hooks/users/{id}" }
    publish: { topic: "user.{path:id}" }
`;

function jwt(claims) {
  const part = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');
  const signing = `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}`;
  return `${signing}.${createHmac('sha256', SECRET).update(signing).digest('base64url')}`;
}

test('the demo page lists the stream routes and opens one with a token', { skip: check(JWT_STREAMS, { HOOKCAST_JWT_SECRET: SECRET }).ok ? undefined : 'stream routes not supported' }, async (t) => {
  const hookcast = await start(JWT_STREAMS, { HOOKCAST_JWT_SECRET: SECRET });
  t.after(() => hookcast.stop());
  const context = await browser.newContext();
  t.after(() => context.close());
  const page = await context.newPage();
  await page.goto(hookcast.url('/_hookcast/'));
  const options = await page.$$eval('[data-testid=stream] option', (os) => os.map((o) => o.value));
  assert.deepEqual(options, ['', '/me', '/feeds/{room}']);

  await page.getByTestId('stream').selectOption('/me');
  const now = Math.floor(Date.now() / 1000);
  await page.getByTestId('token').fill(jwt({ sub: '42', exp: now + 600 }));
  await page.getByTestId('connect').click();
  await waitForState(page, 'open');
  await hookcast.publish('/hooks/users/41', 'not mine');
  const id = await hookcast.publish('/hooks/users/42', 'mine');
  await waitForRow(page, id);
  assert.deepEqual((await rows(page)).map((r) => r.data), ['mine']);
});
