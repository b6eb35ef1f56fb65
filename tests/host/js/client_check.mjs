// Drives the platform's public JS client (npm `@maravilla-labs/platform`, its remote client)
// against a live host, the way a Node app in development does:
//
//   MARAVILLA_DEV_SERVER=http://127.0.0.1:<port> PLATFORM_JS_CLIENT_DIR=<npm folder> node client_check.mjs
//
// PLATFORM_JS_CLIENT_DIR is a folder where `npm install @maravilla-labs/platform` ran (it holds
// node_modules/). Prints one JSON line per check: {"check": name, "value": ...} or, when the
// call threw, {"check": name, "error": message}; the last line is {"done": true}. The pytest
// side (test_js_client.py) asserts every value. Other output (the client logs a line when it
// is created) is not JSON of that shape and is ignored.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const clientDir = process.env.PLATFORM_JS_CLIENT_DIR;
if (!clientDir) throw new Error('PLATFORM_JS_CLIENT_DIR is not set');
if (!process.env.MARAVILLA_DEV_SERVER) throw new Error('MARAVILLA_DEV_SERVER is not set');

// Import the installed package by its own exports map, so this script can live anywhere.
const pkgDir = join(clientDir, 'node_modules', '@maravilla-labs', 'platform');
const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'));
const entry = pkg.exports?.['.']?.import ?? pkg.module ?? pkg.main;
const { getPlatform } = await import(pathToFileURL(join(pkgDir, entry)).href);

const platform = getPlatform(); // MARAVILLA_DEV_SERVER names the host
const KV = platform.env.KV;
const DB = platform.env.DB;
const STORAGE = platform.env.STORAGE;
const workflows = platform.workflows;

function emit(line) {
  process.stdout.write(JSON.stringify(line) + '\n');
}

async function check(name, fn) {
  try {
    const value = await fn();
    emit({ check: name, value: value === undefined ? null : value });
  } catch (err) {
    emit({ check: name, error: String(err?.message ?? err), run: err?.run ?? null });
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function untilStatus(handle, wanted, timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const run = await handle.status();
    if (run && run.status === wanted) return run;
    if (Date.now() > deadline) throw new Error(`run ${handle.runId} never reached ${wanted}: ${JSON.stringify(run)}`);
    await sleep(20);
  }
}

// ----------------------------------------------------------------------------------- KV

const ns = KV.jsns;
await check('kv.put', () => ns.put('user:1', { name: 'Ada', tags: ['math'] }));
await check('kv.get', () => ns.get('user:1'));
await check('kv.put.string', async () => { await ns.put('greeting', 'hello'); return ns.get('greeting'); });
await check('kv.put.number', async () => { await ns.put('answer', 42); return ns.get('answer'); });
await check('kv.get.missing', () => ns.get('no-such-key'));
await check('kv.put.ttl', async () => {
  const before = Date.now();
  await ns.put('temp', { short: true }, { expirationTtl: 3600 });
  const listed = await ns.list({ prefix: 'temp' });
  return { before, after: Date.now(), keys: listed.keys, value: await ns.get('temp') };
});
await check('kv.put.ttl.expires', async () => {
  await ns.put('blink', 1, { expirationTtl: 1 });
  const first = await ns.get('blink');
  await sleep(1100);
  return { first, later: await ns.get('blink') };
});
await check('kv.keys.odd', async () => {
  const keys = ['a b', 'dir/sub/leaf', 'ключ', 'what?now', 'plus+sign'];
  const got = {};
  for (const key of keys) {
    await KV.odd.put(key, key.toUpperCase());
    got[key] = await KV.odd.get(key);
  }
  return { got, listed: (await KV.odd.list()).keys.map((k) => k.name) };
});
await check('kv.list.prefix', async () => {
  for (const i of [5, 3, 1, 4, 2]) await KV.pages.put(`user:${i}`, i);
  await KV.pages.put('other', 0);
  return KV.pages.list({ prefix: 'user:' });
});
await check('kv.list.pages', async () => {
  const pages = [];
  let cursor;
  for (let guard = 0; guard < 10; guard++) {
    const page = await KV.pages.list({ prefix: 'user:', limit: 2, cursor });
    pages.push({ names: page.keys.map((k) => k.name), list_complete: page.list_complete });
    if (page.list_complete) break;
    cursor = page.cursor;
  }
  return pages;
});
await check('kv.list.all', async () => (await KV.pages.list()).keys.map((k) => k.name));
await check('kv.delete', async () => {
  await ns.delete('user:1');
  return { after: await ns.get('user:1'), again: (await ns.delete('user:1')) ?? null };
});

// ----------------------------------------------------------------------------------- DB

const ids = {};
await check('db.insertOne', async () => {
  ids.ada = await DB.insertOne('jsusers', { name: 'Ada', age: 36, email: 'ada@example.com' });
  ids.grace = await DB.insertOne('jsusers', { name: 'Grace', age: 85, email: 'grace@example.com' });
  ids.alan = await DB.insertOne('jsusers', { name: 'Alan', age: 41, email: 'alan@example.com' });
  ids.linus = await DB.insertOne('jsusers', { name: 'Linus', age: 28, email: 'linus@example.com' });
  return ids;
});
await check('db.insertOne.ownId', () => DB.insertOne('jsusers', { _id: 'custom-id', name: 'Custom', age: 1 }));
await check('db.find.filter.sort.limit', () =>
  DB.find('jsusers', { age: { $gte: 30 } }, { sort: { age: -1 }, limit: 2 }));
await check('db.find.skip', async () =>
  (await DB.find('jsusers', {}, { sort: { age: 1 }, skip: 1, limit: 2 })).map((d) => d.name));
await check('db.find.all', async () => (await DB.find('jsusers')).length);
await check('db.find.or', async () =>
  (await DB.find('jsusers', { $or: [{ name: 'Ada' }, { age: { $lt: 2 } }] }, { sort: { name: 1 } })).map((d) => d.name));
await check('db.findOne', () => DB.findOne('jsusers', { name: 'Grace' }));
await check('db.findOne.byId', async () => (await DB.findOne('jsusers', { id: ids.alan }))?.name ?? null);
await check('db.findOne.missing', () => DB.findOne('jsusers', { name: 'Nobody' }));
await check('db.updateOne', () => DB.updateOne('jsusers', { name: 'Ada' }, { $set: { role: 'admin' }, $inc: { age: 1 } }));
await check('db.updateOne.after', () => DB.findOne('jsusers', { name: 'Ada' }));
await check('db.updateOne.nomatch', () => DB.updateOne('jsusers', { name: 'Nobody' }, { $set: { x: 1 } }));
await check('db.deleteOne', () => DB.deleteOne('jsusers', { name: 'Linus' }));
await check('db.deleteOne.after', async () => (await DB.find('jsusers', {}, { sort: { name: 1 } })).map((d) => d.name));
await check('db.deleteOne.nomatch', () => DB.deleteOne('jsusers', { name: 'Nobody' }));
await check('db.createIndex.unique', () => DB.createIndex('jsusers', { keys: [['email', 1]], unique: true }));
await check('db.createIndex.named', () => DB.createIndex('jsusers', { keys: { age: -1 }, name: 'by_age' }));
await check('db.createIndex.again', () => DB.createIndex('jsusers', { keys: { age: -1 }, name: 'by_age' }));
await check('db.listIndexes', () => DB.listIndexes('jsusers'));
await check('db.insertOne.duplicate', () => DB.insertOne('jsusers', { name: 'Ada 2', email: 'ada@example.com' }));
await check('db.insertOne.duplicate.after', async () => (await DB.find('jsusers', { email: 'ada@example.com' })).length);
await check('db.dropIndex', () => DB.dropIndex('jsusers', 'by_age'));
await check('db.dropIndex.again', () => DB.dropIndex('jsusers', 'by_age'));
await check('db.listIndexes.after', async () => (await DB.listIndexes('jsusers')).map((i) => i.name));
await check('db.find.badOperator', () => DB.find('jsusers', { age: { $regexx: 'x' } }));

// ------------------------------------------------------------------------------ STORAGE

const TEXT_KEY = 'js/hello world.txt';
await check('storage.put.text', () =>
  STORAGE.put(TEXT_KEY, 'hello from node', { contentType: 'text/plain', owner: 'node' }));
await check('storage.get.text', async () => new TextDecoder().decode(await STORAGE.get(TEXT_KEY)));
await check('storage.put.bytes', () => STORAGE.put('js/bytes.bin', new Uint8Array([0, 1, 2, 127, 128, 255])));
await check('storage.get.bytes', async () => Array.from(await STORAGE.get('js/bytes.bin')));
await check('storage.put.image', () =>
  STORAGE.put('js/deep/ünï cødé.png', new Uint8Array([0x89, 0x50, 0x4e, 0x47]), { contentType: 'image/png' }));
await check('storage.get.image', async () => Array.from(await STORAGE.get('js/deep/ünï cødé.png')));
await check('storage.getMetadata', () => STORAGE.getMetadata(TEXT_KEY));
await check('storage.getMetadata.bytes', () => STORAGE.getMetadata('js/bytes.bin'));
await check('storage.getMetadata.missing', () => STORAGE.getMetadata('js/missing.txt'));
await check('storage.list.prefix', () => STORAGE.list({ prefix: 'js/' }));
await check('storage.list.limit', async () => (await STORAGE.list({ prefix: 'js/', limit: 1 })).map((o) => o.key));
await check('storage.delete', async () => {
  await STORAGE.delete('js/bytes.bin');
  return { get: await STORAGE.get('js/bytes.bin'), meta: await STORAGE.getMetadata('js/bytes.bin') };
});
await check('storage.get.missing', () => STORAGE.get('js/never-written'));
await check('storage.put.hostile', () => STORAGE.put('../escape.txt', 'x'));

// ---------------------------------------------------------------------------- WORKFLOWS

await check('wf.echo', async () => {
  const handle = await workflows.start('echo', { x: 1, list: ['a'] });
  const result = await handle.result({ timeoutMs: 10000 });
  return { runId: handle.runId, result, status: await handle.status(), history: await handle.history() };
});
await check('wf.echo.defaultInput', async () => {
  const handle = await workflows.start('echo');
  return handle.result({ timeoutMs: 10000 });
});
await check('wf.handle', async () => {
  const started = await workflows.start('echo', 'by-handle');
  await started.result({ timeoutMs: 10000 });
  const handle = workflows.handle(started.runId);
  return { same: handle.runId === started.runId, status: (await handle.status()).status, result: await handle.result() };
});
await check('wf.sleepy', async () => {
  // Timed from before the start: the run's 200 ms nap may begin before start() returns.
  const started = Date.now();
  const handle = await workflows.start('sleepy');
  const result = await handle.result({ timeoutMs: 10000 });
  return { result, tookMs: Date.now() - started, history: await handle.history() };
});
await check('wf.waiter', async () => {
  const handle = await workflows.start('waiter', { orderId: 'js-1' });
  const parked = await untilStatus(handle, 'waiting_event');
  const miss = await workflows.sendEvent('order.approved', { orderId: 'someone-else' });
  const hit = await workflows.sendEvent('order.approved', { orderId: 'js-1', by: 'node' });
  const result = await handle.result({ timeoutMs: 10000 });
  return { parked: parked.status, miss, hit, result, history: await handle.history() };
});
await check('wf.sendEvent.none', () => workflows.sendEvent('nobody.listens'));
await check('wf.failing', async () => {
  const handle = await workflows.start('failing', {});
  return handle.result({ timeoutMs: 10000 });
});
await check('wf.cancel', async () => {
  const handle = await workflows.start('waiter', { orderId: 'js-2' });
  await untilStatus(handle, 'waiting_event');
  const cancelled = await handle.cancel();
  const status = (await handle.status()).status;
  const again = await handle.cancel();
  let error = null;
  try { await handle.result({ timeoutMs: 5000 }); } catch (err) { error = { message: err.message, status: err.run?.status }; }
  return { cancelled, status, again, error };
});
await check('wf.result.timeout', async () => {
  const handle = await workflows.start('waiter', { orderId: 'js-3' });
  let error = null;
  const started = Date.now();
  try { await handle.result({ timeoutMs: 300 }); } catch (err) { error = err.message; }
  const tookMs = Date.now() - started;
  await handle.cancel();
  return { error, tookMs };
});
await check('wf.unknownRun.status', () => workflows.handle('no-such-run').status());
await check('wf.unknownRun.result', () => workflows.handle('no-such-run').result({ timeoutMs: 1000 }));
await check('wf.unknownWorkflow', async () => {
  const handle = await workflows.start('no-such-workflow', {});
  return { runId: handle.runId ?? null };
});

emit({ done: true });
