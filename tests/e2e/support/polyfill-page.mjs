// A test page that loads event-source-polyfill (the npm file itself) and records
// what its EventSourcePolyfill sees, for tests to read with page.evaluate.

import { POLYFILL, html, js, recordStreams, serveAssets } from './browser.mjs';

const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>event-source-polyfill against hookcast</title>
<script src="/_e2e/eventsource.js"></script>
<script>
  "use strict";
  // What the client saw, in order: events (with the id it reports), opens, errors.
  window.seen = { events: [], opens: 0, errors: [] };
  window.subscribe = (url, options) => {
    const es = new EventSourcePolyfill(url, options);
    es.onopen = () => { seen.opens++; };
    es.onerror = (e) => {
      // A refusal (non-200) is an error event with the status, and the polyfill gives up.
      seen.errors.push({ message: e.error ? e.error.message : "", status: e.status, readyState: es.readyState });
    };
    const record = (e) => seen.events.push({ id: e.lastEventId, name: e.type, data: e.data });
    for (const name of ["message", "hookcast.resync", ...(options.names || [])]) {
      es.addEventListener(name, record);
    }
    window.es = es;
  };
</script>
<body>event-source-polyfill test page</body>
`;

/** The page and the polyfill it loads, for serveAssets(). */
const POLYFILL_ASSETS = {
  'polyfill.html': html(PAGE),
  'eventsource.js': js(POLYFILL),
};

/**
 * Opens the page on `app`'s own origin in a new context of `browser`, closed
 * after test `t`; the page and the streams it opens (recordStreams).
 */
export async function openPolyfillPage(t, browser, app) {
  const context = await browser.newContext();
  t.after(() => context.close());
  await serveAssets(context, app.origin, POLYFILL_ASSETS);
  const page = await context.newPage();
  const streams = recordStreams(page);
  await page.goto(app.url('/_e2e/polyfill.html'));
  return { page, streams };
}
