// The operator page on the admin listener (src/admin/page.html) in headless
// Chromium: webhooks sent by the test appear in the live log; the detail view shows
// the route and event id, why a refused one was refused, why an unmatched one
// matched no route; redelivery; and no signature reaches the page.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { copyFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { start, DEMO_ROUTES, ROOT, PATIENCE_MS } from './support/hookcast.mjs';
import { launch } from './support/browser.mjs';

const SECRET = 'operator-secret-Vb83';

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

/** The admin listener's address, from its startup log line. */
function adminOrigin(app) {
  for (const line of app.logs) {
    try {
      const rec = JSON.parse(line);
      if (rec.fields?.message?.startsWith('admin listening')) return `http://${rec.fields.addr}`;
    } catch {
      // not a log record
    }
  }
  throw new Error(`no admin address in the logs:\n${app.logs.join('\n')}`);
}

const sign = (body, secret = SECRET) => `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;

/** Waits until the log lists a row whose cells contain `text`; returns it. */
async function waitForLogRow(page, text) {
  const row = page.locator('#log tbody tr', { hasText: text }).first();
  await row.waitFor({ timeout: PATIENCE_MS });
  return row;
}

test('operator page: live log, detail view with route, event id and refusal reasons, redelivery', async (t) => {
  const app = await start(
    `
admin: { listen: "127.0.0.1:0" }
inspect: { bodies: true }
routes:
  - name: signed
    match: { path: /hooks/signed }
    verify: { scheme: github, secret_env: OPERATOR_SECRET }
    publish: { topic: signed }
  - name: orders
    match: { path: /hooks/orders, json: { "/type": "order.created" } }
    publish: { topic: "orders.{json:/region}" }
${DEMO_ROUTES.replace('routes:\n', '')}`,
    { OPERATOR_SECRET: SECRET },
  );
  t.after(() => app.stop());
  const admin = adminOrigin(app);

  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  t.after(() => context.close());
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  // Every request the page makes stays on the admin listener (no CDN, nothing else).
  const elsewhere = [];
  page.on('request', (r) => new URL(r.url()).origin !== admin && !r.url().startsWith('data:') && elsewhere.push(r.url()));

  await page.goto(`${admin}/`);
  await page.locator('#live[data-state="open"]').waitFor({ timeout: PATIENCE_MS });
  assert.deepEqual(
    await page.locator('#routes tbody td:first-child').allTextContents(),
    ['signed', 'orders', 'demo-named', 'demo'],
  );

  // Accepted: its route and event id.
  const body = JSON.stringify({ message: 'hello' });
  const id = await app.publish('/hooks/demo/lobby', body);
  const accepted = await waitForLogRow(page, id);
  await accepted.click();
  assert.equal(await page.locator('#detail-route').textContent(), 'demo');
  assert.equal(await page.locator('#detail-event-id').textContent(), id);
  assert.equal(await page.locator('#detail-topics').textContent(), 'demo.lobby');
  assert.match(await page.locator('#detail-payload').textContent(), /"message": "hello"/);

  // Refused for its signature: why, and the signature never shown.
  const forged = sign('{"x":1}', 'not-the-secret');
  const refused = await fetch(app.url('/hooks/signed'), {
    method: 'POST',
    headers: { 'X-Hub-Signature-256': forged },
    body: '{"x":1}',
  });
  assert.equal(refused.status, 401);
  await (await waitForLogRow(page, 'signature_invalid')).click();
  assert.equal(await page.locator('#detail-route').textContent(), 'signed');
  assert.equal(await page.locator('#detail-verify').textContent(), 'github: signature_invalid');
  assert.match(await page.locator('#detail-error').textContent(), /signature does not match/);
  assert.match(await page.locator('#detail-headers').textContent(), /x-hub-signature-256: \[redacted\]/);

  // No route's conditions hold: each route's reason.
  const unmatched = await fetch(app.url('/hooks/orders'), {
    method: 'POST',
    body: JSON.stringify({ type: 'order.paid', region: 'eu' }),
  });
  assert.equal(unmatched.status, 404);
  await (await waitForLogRow(page, '/hooks/orders')).click();
  assert.equal(await page.locator('#detail-route').textContent(), 'none');
  const reasons = await page.locator('#detail-unmatched li').allTextContents();
  assert.deepEqual(reasons, [
    'signed: path does not match /hooks/signed',
    'orders: JSON pointer /type is not "order.created"',
    'demo-named: path does not match /hooks/demo/{room}',
    'demo: path does not match /hooks/demo/{room}',
  ]);

  // Redeliver the accepted one: a new event, and a new row that says so.
  await accepted.click();
  await page.locator('#redeliver').click();
  await page.locator('#redeliver-result', { hasText: 'published as' }).waitFor({ timeout: PATIENCE_MS });
  const again = (await page.locator('#redeliver-result').textContent()).match(/published as (\S+)/)[1];
  assert.notEqual(again, id);
  await (await waitForLogRow(page, again)).click();
  assert.match(await page.locator('#detail-id').textContent(), /redelivery of/);

  // The filters narrow the list.
  await page.locator('#filter-status').fill('4xx');
  assert.equal(await page.locator('#log tbody tr').count(), 2);
  await page.locator('#filter-status').fill('');

  // Topics and counters.
  await page.locator('#stat-webhooks', { hasText: /^[1-9]/ }).waitFor({ timeout: PATIENCE_MS });
  const html = await page.content();
  assert.ok(!html.includes(forged.slice(7)), 'the signature is not on the page');
  assert.ok(!html.includes(SECRET), 'the secret is not on the page');
  assert.deepEqual(elsewhere, [], 'the page loads nothing from elsewhere');
  assert.deepEqual(errors, [], 'the page threw or logged an error');

  // The public listener does not serve the page.
  const pub = await fetch(app.url('/'));
  assert.equal(pub.status, 404);
  assert.ok(!(await pub.text()).includes('operator'));

  // For the README: the webhook no route took, with each route's reason.
  await (await waitForLogRow(page, '/hooks/orders')).click();
  const shot = join(mkdtempSync(join(tmpdir(), 'hookcast-shot-')), 'operator.png');
  await page.screenshot({ path: shot, animations: 'disabled' });
  if (process.env.HOOKCAST_SCREENSHOT === '1') copyFileSync(shot, join(ROOT, 'docs/operator.png'));
  t.diagnostic(`screenshot: ${shot}`);
});
