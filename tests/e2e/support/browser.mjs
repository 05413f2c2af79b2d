// Headless Chromium from the distribution (`apt-get install chromium`), driven by
// playwright-core, which never downloads a browser of its own.

import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.HOOKCAST_CHROMIUM || '/usr/bin/chromium';

const require = createRequire(import.meta.url);

/** event-source-polyfill as npm ships it: the test pages load this very file. */
export const POLYFILL = readFileSync(require.resolve('event-source-polyfill/src/eventsource.js'), 'utf8');

export async function launch() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `no Chromium at ${CHROMIUM}: install it (Debian: apt-get install chromium) or set HOOKCAST_CHROMIUM`,
    );
  }
  return chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
}

/**
 * Serves test assets from Node at `origin` (hookcast's own origin included) by
 * intercepting the browser's requests for `origin/_e2e/*`: a test page is then
 * same-origin with hookcast without hookcast serving anything but itself.
 * Nothing else is intercepted, so event streams go to hookcast untouched.
 */
export async function serveAssets(context, origin, assets) {
  await context.route(`${origin}/_e2e/**`, (route) => {
    const path = new URL(route.request().url()).pathname.slice('/_e2e/'.length);
    const asset = assets[path];
    if (asset === undefined) return route.fulfill({ status: 404, body: 'no such test asset' });
    return route.fulfill({ status: 200, contentType: asset.type, body: asset.body });
  });
}

/** A plain static HTTP server on 127.0.0.1:0 (another origin than hookcast's). */
export async function staticServer(assets) {
  const server = createServer((req, res) => {
    const asset = assets[new URL(req.url, 'http://x').pathname.slice(1)];
    if (asset === undefined) {
      res.writeHead(404).end('no such test asset');
      return;
    }
    res.writeHead(200, { 'Content-Type': asset.type, 'Cache-Control': 'no-store' }).end(asset.body);
  });
  await new Promise((res) => server.listen(0, '127.0.0.1', res));
  return {
    origin: `http://127.0.0.1:${server.address().port}`,
    close: () => new Promise((res) => server.close(res)),
  };
}

export const html = (body) => ({ type: 'text/html; charset=utf-8', body });
export const js = (body) => ({ type: 'text/javascript; charset=utf-8', body });

/**
 * Records the page's requests to hookcast's event stream, with their headers, so
 * a test can see each (re)connection and the Last-Event-ID / lastEventId it sent.
 */
export function recordStreams(page, ssePath = '/events') {
  const streams = [];
  page.on('request', async (req) => {
    const url = new URL(req.url());
    if (url.pathname !== ssePath) return;
    const entry = { url, headers: req.headers() };
    streams.push(entry);
    // allHeaders() includes those the network stack adds (Last-Event-ID is one).
    entry.headers = await req.allHeaders().catch(() => entry.headers);
  });
  return streams;
}
