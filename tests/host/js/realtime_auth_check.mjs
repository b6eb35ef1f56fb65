// Drives the platform's public JS client against a live host for realtime and auth:
// getPlatform().realtime and .auth (HTTP) and RealtimeClient (WebSocket, with the npm `ws`
// package as Node 20's missing global WebSocket).
//
//   MARAVILLA_DEV_SERVER=http://127.0.0.1:<port> PLATFORM_JS_CLIENT_DIR=<npm folder> node realtime_auth_check.mjs
//
// PLATFORM_JS_CLIENT_DIR holds node_modules/ with @maravilla-labs/platform and ws. Prints one
// JSON line per check ({"check", "value"} or {"check", "error"}), then {"done": true}; the
// pytest side (test_js_realtime_auth.py) asserts every value.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const clientDir = process.env.PLATFORM_JS_CLIENT_DIR;
const base = process.env.MARAVILLA_DEV_SERVER;
if (!clientDir || !base) throw new Error('PLATFORM_JS_CLIENT_DIR and MARAVILLA_DEV_SERVER must be set');

const require = createRequire(join(clientDir, 'package.json'));
globalThis.WebSocket = require('ws'); // Node 20 has no global WebSocket

const pkgDir = join(clientDir, 'node_modules', '@maravilla-labs', 'platform');
const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'));
const entry = pkg.exports?.['.']?.import ?? pkg.module ?? pkg.main;
const { getPlatform, RealtimeClient } = await import(pathToFileURL(join(pkgDir, entry)).href);

const platform = getPlatform();
const realtime = platform.realtime;
const auth = platform.auth;
const wsEndpoint = base.replace(/^http/, 'ws') + '/_rt/ws';

function emit(line) {
  process.stdout.write(JSON.stringify(line) + '\n');
}

async function check(name, fn) {
  try {
    const value = await fn();
    emit({ check: name, value: value === undefined ? null : value });
  } catch (err) {
    emit({ check: name, error: String(err?.message ?? err) });
  }
}

function waitFor(predicate, what, timeoutMs = 10000) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const timer = setInterval(() => {
      const value = predicate();
      if (value) {
        clearInterval(timer);
        resolve(value);
      } else if (Date.now() - started > timeoutMs) {
        clearInterval(timer);
        reject(new Error(`timed out waiting for ${what}`));
      }
    }, 10);
  });
}

// ---------------------------------------------------------------- realtime over HTTP

await check('realtime.publish', async () => {
  await realtime.publish('chat:js', { text: 'one' }, { userId: 'ada' });
  await realtime.publish('chat:js', { text: 'two' });
  return null;
});
await check('realtime.history', () => realtime.history('chat:js'));
await check('realtime.history.after', () => realtime.history('chat:js', { after: 1, limit: 5 }));
await check('realtime.presence', async () => {
  const first = await realtime.presence.join('js-room', 'ada', { mood: 'curious' });
  const again = await realtime.presence.join('js-room', 'ada', { mood: 'busy' });
  const members = await realtime.presence.members('js-room');
  const channels = await realtime.channels();
  const left = await realtime.presence.leave('js-room', 'ada');
  const leftAgain = await realtime.presence.leave('js-room', 'ada');
  return { first, again, members, channels, left, leftAgain, after: await realtime.presence.members('js-room') };
});

// ----------------------------------------------------------- RealtimeClient (WebSocket)

await check('realtime.client', async () => {
  const alice = new RealtimeClient({ wsEndpoint, clientId: 'alice-tab', autoReconnect: false });
  const bob = new RealtimeClient({ wsEndpoint, clientId: 'bob-tab', autoReconnect: false });
  const got = [];
  const joins = [];
  const leaves = [];
  alice.subscribe('chat:room', (event) => {
    if (event.event === 'message') got.push({ data: event.data, userId: event.userId, seq: event.seq });
  });
  const lobby = alice.presence('chat:room');
  lobby.onJoin((m) => joins.push(m.userId));
  lobby.onLeave((m) => leaves.push(m.userId));
  alice.connect();
  bob.connect();
  await waitFor(() => alice.isConnected() && bob.isConnected(), 'both connected');
  // The subscribe is confirmed before anything is published (publishes are not queued for
  // channels nobody listens to yet).
  for (let i = 0; !(await realtime.channels()).includes('chat:room'); i++) {
    if (i > 500) throw new Error('the subscription never showed up');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  bob.presence('chat:room').join('bob', { color: 'blue' });
  bob.publish('chat:room', { text: 'hi alice' }, { userId: 'bob' });
  await realtime.publish('chat:room', { text: 'from the server' });
  await waitFor(() => got.length >= 2 && joins.length >= 1, 'messages and join');
  const members = await realtime.presence.members('chat:room');
  bob.disconnect(); // sends presence:leave first
  await waitFor(() => leaves.length >= 1, 'leave');
  alice.disconnect();
  return { got, joins, leaves, members: members.map((m) => m.userId) };
});

// --------------------------------------------------------------------------- auth (HTTP)

const email = `js-${Date.now()}@example.com`;
let user = null;
let session = null;
await check('auth.register', async () => {
  user = await auth.register({ email, password: 'js password 1', profile: { from: 'node' } });
  return user;
});
await check('auth.login', async () => {
  session = await auth.login({ email, password: 'js password 1' });
  return session;
});
await check('auth.login.wrong', () => auth.login({ email, password: 'not the password' }));
await check('auth.login.unknown', () => auth.login({ email: 'nobody@example.com', password: 'not the password' }));
await check('auth.validate', () => auth.validate(session.access_token));
await check('auth.refresh', async () => {
  const renewed = await auth.refresh(session.refresh_token);
  let reuse = null;
  try {
    await auth.refresh(session.refresh_token);
  } catch (err) {
    reuse = String(err.message);
  }
  session = await auth.login({ email, password: 'js password 1' });
  return { renewed: typeof renewed.access_token === 'string' && renewed.refresh_token !== session.refresh_token, reuse };
});
await check('auth.getUser', () => auth.getUser(user.id));
await check('auth.getUser.missing', () => auth.getUser('usr_missing'));
await check('auth.listUsers', () => auth.listUsers({ email_contains: 'js-', limit: 10 }));
await check('auth.updateUser', () => auth.updateUser(user.id, { profile: { plan: 'pro' } }));
await check('auth.verify', async () => {
  const { token } = await auth.sendVerification(user.id);
  await auth.verifyEmail(token);
  return (await auth.getUser(user.id)).email_verified;
});
await check('auth.reset', async () => {
  const { token } = await auth.sendPasswordReset(email);
  await auth.resetPassword(token, 'js password 2');
  const fresh = await auth.login({ email, password: 'js password 2' });
  await auth.changePassword(user.id, 'js password 2', 'js password 3');
  session = await auth.login({ email, password: 'js password 3' });
  return typeof fresh.access_token;
});
await check('auth.logout', async () => {
  await auth.logout(session.session_id);
  try {
    await auth.validate(session.access_token);
    return 'still valid';
  } catch (err) {
    return String(err.message);
  }
});
await check('auth.deleteUser', async () => {
  await auth.deleteUser(user.id);
  return await auth.getUser(user.id);
});

emit({ done: true });
process.exit(0);
