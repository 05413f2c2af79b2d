// A real hookcast binary on 127.0.0.1:0 with a YAML config written for the test,
// plus the few HTTP helpers the tests need (publish a webhook, run `hookcast check`).

import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

/** Longest wait for something that should happen at once (start, exit, an event). */
export const PATIENCE_MS = 10_000;

let built = null;

/**
 * The hookcast binary: $HOOKCAST_BIN (scripts/test sets it after `cargo test`
 * has built it), else `cargo build` once per test file, so that running
 * `node --test` by hand never tests a stale binary.
 */
export function binary() {
  if (process.env.HOOKCAST_BIN) return process.env.HOOKCAST_BIN;
  if (built) return built;
  const r = spawnSync('cargo', ['build', '--quiet', '--locked', '--bin', 'hookcast'], {
    cwd: ROOT,
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  if (r.status !== 0) throw new Error(`cargo build failed (${r.error ?? `exit ${r.status}`})`);
  built = resolve(ROOT, process.env.CARGO_TARGET_DIR || 'target', 'debug/hookcast');
  if (!existsSync(built)) throw new Error(`no binary at ${built} after cargo build`);
  return built;
}

/** The test's YAML after a common head: an ephemeral port, JSON logs, the demo page. */
function configText(yaml) {
  return `listen: "127.0.0.1:0"\nlog: { format: json, level: info }\ndemo: true\n${yaml}`;
}

function writeConfig(yaml) {
  const dir = mkdtempSync(join(tmpdir(), 'hookcast-e2e-'));
  const file = join(dir, 'hookcast.yaml');
  writeFileSync(file, configText(yaml));
  return { dir, file };
}

/** The demo routes of config.example.yaml: POST /hooks/demo/{room} -> demo.{room}, X-Event names it. */
export const DEMO_ROUTES = `
routes:
  - name: demo-named
    match:
      path: "/hooks/demo/{room}"
      headers: { X-Event: "*" }
    publish:
      topic: "demo.{path:room}"
      event: "{header:X-Event}"
  - name: demo
    match:
      path: "/hooks/demo/{room}"
    publish:
      topic: "demo.{path:room}"
`;

/**
 * `hookcast check` on this config: `{ ok, output }`. Tests of features that the
 * binary may not have yet ask it first whether it understands their config.
 */
export function check(yaml, env = {}) {
  const { dir, file } = writeConfig(yaml);
  try {
    const r = spawnSync(binary(), ['check', '--config', file], {
      env: { ...process.env, ...env },
      encoding: 'utf8',
    });
    return { ok: r.status === 0, output: `${r.stdout}${r.stderr}`.trim().replaceAll(file, 'config') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Starts hookcast with `yaml` (after the common head) and resolves once it logs
 * the address it listens on. Call `stop()` when done (tests do it in `after`).
 */
export async function start(yaml, env = {}) {
  const { dir, file } = writeConfig(yaml);
  // RUST_LOG would win over the config's log level and could hide the address.
  const { RUST_LOG: _, ...inherited } = process.env;
  const child = spawn(binary(), ['--config', file], {
    env: { ...inherited, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const logs = [];
  let exited = null;
  const exit = new Promise((res) =>
    child.on('exit', (code, signal) => {
      exited = { code, signal };
      res(exited);
    }),
  );
  const addr = await new Promise((res, rej) => {
    let buf = '';
    const timer = setTimeout(() => rej(new Error(`hookcast did not log its address:\n${logs.join('\n')}`)), PATIENCE_MS);
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk) => {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        logs.push(line);
        try {
          const rec = JSON.parse(line);
          if (rec.fields?.message === 'listening') {
            clearTimeout(timer);
            res(rec.fields.addr);
          }
        } catch {
          // not a log record (a panic message, say): kept in `logs`
        }
      }
    });
    exit.then((e) => {
      clearTimeout(timer);
      rej(new Error(`hookcast exited (${JSON.stringify(e)}) before listening:\n${logs.join('\n')}`));
    });
  });
  const origin = `http://${addr}`;
  return {
    origin,
    logs,
    url: (path) => origin + path,
    /** POSTs a webhook; resolves to the event id (fails unless 202). */
    async publish(path, body, headers = {}) {
      const res = await fetch(origin + path, { method: 'POST', headers, body });
      const text = await res.text();
      if (res.status !== 202) throw new Error(`POST ${path}: ${res.status} ${text}`);
      return JSON.parse(text).id;
    },
    /** SIGTERM, then SIGKILL if it has not exited within PATIENCE_MS; removes the config. */
    async stop() {
      if (!exited) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), PATIENCE_MS);
        await exit;
        clearTimeout(t);
      }
      rmSync(dir, { recursive: true, force: true });
      return exited;
    },
  };
}
