#!/usr/bin/env node
// The libuv pool runs bkp's blocking calls: O_DIRECT device reads and writes, fsync, and the
// blksnap event wait, which holds one thread for a whole snapshot session. Four threads (the
// default) leave too few for I/O; it must be set before the pool starts.
process.env.UV_THREADPOOL_SIZE ??= '8';
// The AWS SDK warns on every run under Node 20 that its releases after January 2027 need Node 22;
// bkp pins its SDK version, and a warning on stderr would make cron mail every night.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
// Node 22.1+ can keep compiled modules on disk: a run then starts ~0.15 s sooner. The cache is
// kept in a directory of this user's own (~/.cache/bkp), never in a shared one such as /tmp:
// code that root runs must not come from a directory another user could have made. Node 20 has
// no such cache; nothing changes there.
const { default: mod } = await import('node:module');
if (mod.enableCompileCache) {
  try {
    const { mkdirSync, statSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { homedir } = await import('node:os');
    const dir = join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'bkp', 'node-compile-cache');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const st = statSync(dir);
    if (st.uid === process.getuid() && (st.mode & 0o077) === 0) mod.enableCompileCache(dir);
  } catch {
    // no cache: a slower start, nothing else
  }
}
await import('../dist/src/cli/main.js');
