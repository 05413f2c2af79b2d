// Reading the demo page (src/demo.html) the way a person does: its rows, its state.

import { PATIENCE_MS } from './hookcast.mjs';

/** The demo page URL that follows `topics` and listens for `names` at once. */
export function demoUrl(app, topics, names = []) {
  const q = new URLSearchParams({ topics: topics.join(','), autoconnect: '1' });
  if (names.length) q.set('names', names.join(','));
  return app.url(`/_hookcast/?${q}`);
}

/** Every event row, oldest first (the page lists them newest first). */
export async function rows(page) {
  const list = await page.$$eval('[data-testid=event-row]', (els) =>
    els.map((el) => ({
      id: el.querySelector('[data-testid=event-id]').textContent,
      name: el.querySelector('[data-testid=event-name]').textContent,
      data: el.querySelector('[data-testid=event-data]').textContent,
    })),
  );
  return list.reverse();
}

/** Waits until the page lists an event with this id. */
export async function waitForRow(page, id) {
  await page.getByTestId('event-id').getByText(id, { exact: true }).waitFor({ timeout: PATIENCE_MS });
}

/** Waits until the page shows at least `n` rows. */
export async function waitForRows(page, n, timeout = PATIENCE_MS) {
  await page.waitForFunction((n) => document.querySelectorAll('[data-testid=event-row]').length >= n, n, {
    timeout,
  });
}

/** Waits until the connection badge says `state` (connecting, open, reconnecting, ...). */
export async function waitForState(page, state, timeout = PATIENCE_MS) {
  await page.locator(`[data-testid=state][data-state="${state}"]`).waitFor({ timeout });
}

/** What the page shows for event data: JSON pretty-printed, anything else as is. */
export function shown(data) {
  try {
    return JSON.stringify(JSON.parse(data), null, 2);
  } catch {
    return data;
  }
}
