// Subscriber credentials from real browsers: event-source-polyfill sending
// `Authorization: Bearer` against `subscribers.auth: jwt`, and a page on another
// origin subscribing with `withCredentials: true` under `cors`.
//
// These need subscriber auth and CORS (README, "Securing hookcast"). Each test first asks
// `hookcast check` whether the binary accepts its config, and is skipped, with
// hookcast's own words as the reason, when it does not.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';

import { start, check, DEMO_ROUTES, PATIENCE_MS } from './support/hookcast.mjs';
import { launch, recordStreams, staticServer, html } from './support/browser.mjs';
import { openPolyfillPage } from './support/polyfill-page.mjs';

const SECRET = 'e2e-secret-that-is-long-enough-for-hs256';
const ENV = { HOOKCAST_JWT_SECRET: SECRET };
const TOPICS_CLAIM = '/hookcast/subscribe';

/** An HS256 JWT, signed the way RFC 7515 says, with node:crypto. */
function jwt(claims) {
  const part = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');
  const signing = `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}`;
  return `${signing}.${createHmac('sha256', SECRET).update(signing).digest('base64url')}`;
}

/** A token valid for ten minutes whose topics claim lists `patterns`. */
function token(patterns) {
  const now = Math.floor(Date.now() / 1000);
  return jwt({ sub: 'e2e', iat: now, exp: now + 600, hookcast: { subscribe: patterns } });
}

const JWT_AUTH = `
subscribers:
  auth: jwt
  jwt:
    secret_env: HOOKCAST_JWT_SECRET
    algorithms: [HS256]
    topics_claim: "${TOPICS_CLAIM}"
    cookie: "hookcast_token"
`;

function corsConfig(origin) {
  return `${JWT_AUTH}
cors:
  allow_origins: ["${origin}"]
  allow_credentials: true
`;
}

/** Why a test of this config cannot run on this binary, or undefined when it can. */
function unsupported(yaml) {
  const r = check(`${yaml}${DEMO_ROUTES}`, ENV);
  return r.ok ? undefined : `this hookcast rejects the config: ${r.output.split('\n')[0]}`;
}

const jwtSkip = unsupported(JWT_AUTH);
const corsSkip = unsupported(corsConfig('http://127.0.0.1:1'));

let browser;
before(async () => {
  if (!(jwtSkip && corsSkip)) browser = await launch();
});
after(async () => {
  await browser?.close();
});

test(
  'event-source-polyfill subscribes with Authorization: Bearer (subscribers.auth: jwt) and keeps it across reconnects',
  { skip: jwtSkip },
  async (t) => {
    const app = await start(
      `
sse:
  retry: 300ms
  max_stream_duration: 2s
${JWT_AUTH}${DEMO_ROUTES}`,
      ENV,
    );
    t.after(() => app.stop());
    const { page, streams } = await openPolyfillPage(t, browser, app);
    const url = app.url('/events?topic=demo.lobby');
    const headers = { Authorization: `Bearer ${token(['demo.*'])}` };
    await page.evaluate(([url, headers]) => window.subscribe(url, { headers }), [url, headers]);
    // Events published before the stream opens are not the client's to get.
    await page.waitForFunction(() => window.seen.opens === 1, null, { timeout: PATIENCE_MS });

    const sent = [];
    const deadline = Date.now() + 30_000;
    while (streams.length < 2) {
      assert.ok(Date.now() < deadline, `only ${streams.length} connections in 30 s`);
      sent.push(await app.publish('/hooks/demo/lobby', JSON.stringify({ n: sent.length })));
      await new Promise((r) => setTimeout(r, 100));
    }
    sent.push(await app.publish('/hooks/demo/lobby', '{"last":true}'));
    await page.waitForFunction((id) => window.seen.events.some((e) => e.id === id), sent.at(-1), {
      timeout: PATIENCE_MS,
    });
    const seen = await page.evaluate(() => window.seen);
    assert.deepEqual(
      seen.events.map((e) => e.id),
      sent,
    );
    for (const s of streams) assert.equal(s.headers.authorization, headers.Authorization);
    assert.ok(streams[1].url.searchParams.has('lastEventId'));
  },
);

test('event-source-polyfill without a token gets 401, with a token for other topics 403, and stops', { skip: jwtSkip }, async (t) => {
  const app = await start(`${JWT_AUTH}${DEMO_ROUTES}`, ENV);
  t.after(() => app.stop());
  const { page } = await openPolyfillPage(t, browser, app);
  const url = app.url('/events?topic=demo.lobby');
  for (const [headers, status] of [
    [{}, 401],
    [{ Authorization: `Bearer ${token(['orders.*'])}` }, 403],
    [{ Authorization: `Bearer ${token(['demo.*']).slice(0, -4)}AAAA` }, 401],
  ]) {
    await page.evaluate(([url, headers]) => {
      window.seen = { events: [], opens: 0, errors: [] };
      window.subscribe(url, { headers });
    }, [url, headers]);
    await page.waitForFunction(() => window.seen.errors.length > 0, null, { timeout: PATIENCE_MS });
    const seen = await page.evaluate(() => window.seen);
    assert.equal(seen.errors[0].status, status, JSON.stringify(headers));
    assert.equal(seen.errors[0].readyState, 2, 'a refusal is final');
    assert.equal(seen.opens, 0);
  }
});

// A page served from another origin (another port of 127.0.0.1: cross-origin, but
// same-site, so the SameSite=Lax cookie is sent) subscribes with native
// EventSource and withCredentials; the JWT is in hookcast's cookie.
const CROSS_ORIGIN_PAGE = `<!doctype html>
<meta charset="utf-8">
<title>cross-origin subscriber</title>
<script>
  "use strict";
  window.seen = { events: [], opens: 0, errors: [] };
  window.subscribe = (url) => {
    const es = new EventSource(url, { withCredentials: true });
    es.onopen = () => { seen.opens++; };
    es.onerror = () => { seen.errors.push({ readyState: es.readyState }); };
    es.onmessage = (e) => seen.events.push({ id: e.lastEventId, data: e.data });
    window.es = es;
  };
</script>
<body>cross-origin page</body>
`;

test('cross-origin with withCredentials: the allowed origin gets events with the cookie, another is refused by the browser', { skip: corsSkip }, async (t) => {
  const allowed = await staticServer({ 'page.html': html(CROSS_ORIGIN_PAGE) });
  t.after(() => allowed.close());
  const other = await staticServer({ 'page.html': html(CROSS_ORIGIN_PAGE) });
  t.after(() => other.close());
  const app = await start(`${corsConfig(allowed.origin)}${DEMO_ROUTES}`, ENV);
  t.after(() => app.stop());
  const streamUrl = app.url('/events?topic=demo.lobby');
  const host = new URL(app.origin).hostname;

  const open = async (origin, withCookie) => {
    const context = await browser.newContext();
    t.after(() => context.close());
    if (withCookie) {
      await context.addCookies([
        { name: 'hookcast_token', value: token(['demo.*']), domain: host, path: '/', sameSite: 'Lax' },
      ]);
    }
    const page = await context.newPage();
    const streams = recordStreams(page);
    const responses = [];
    page.on('response', (r) => {
      if (new URL(r.url()).pathname === '/events') responses.push(r);
    });
    await page.goto(`${origin}/page.html`);
    await page.evaluate((url) => window.subscribe(url), streamUrl);
    return { page, streams, responses };
  };
  const seen = (page) => page.evaluate(() => window.seen);

  // Allowed origin, with the cookie: events arrive.
  const ok = await open(allowed.origin, true);
  await ok.page.waitForFunction(() => window.seen.opens === 1, null, { timeout: PATIENCE_MS });
  const id = await app.publish('/hooks/demo/lobby', '{"cross":"origin"}');
  await ok.page.waitForFunction(() => window.seen.events.length === 1, null, { timeout: PATIENCE_MS });
  assert.deepEqual((await seen(ok.page)).events, [{ id, data: '{"cross":"origin"}' }]);
  assert.match(ok.streams[0].headers.cookie ?? '', /hookcast_token=/, 'the cookie went with the request');
  assert.equal(ok.streams[0].headers.origin, allowed.origin);
  const headers = await ok.responses[0].allHeaders();
  assert.equal(headers['access-control-allow-origin'], allowed.origin);
  assert.equal(headers['access-control-allow-credentials'], 'true');

  // Allowed origin, no cookie: hookcast refuses (401), so the cookie was what let the first in.
  const noCookie = await open(allowed.origin, false);
  await noCookie.page.waitForFunction(() => window.seen.errors.length > 0, null, { timeout: PATIENCE_MS });
  assert.equal((await seen(noCookie.page)).opens, 0);
  assert.equal(noCookie.responses[0]?.status(), 401);

  // Another origin, with the cookie: the browser refuses the answer; nothing arrives.
  const refused = await open(other.origin, true);
  await refused.page.waitForFunction(() => window.seen.errors.length > 0, null, { timeout: PATIENCE_MS });
  await app.publish('/hooks/demo/lobby', '{"not":"for other origins"}');
  const s = await seen(refused.page);
  assert.equal(s.opens, 0);
  assert.deepEqual(s.events, []);
  assert.equal(s.errors[0].readyState, 2, 'the browser fails the connection for good');
  // The allowed page got that event; by then the other page would have too.
  await ok.page.waitForFunction(() => window.seen.events.length === 2, null, { timeout: PATIENCE_MS });
  assert.deepEqual((await seen(refused.page)).events, []);
});
