#!/usr/bin/env node
// The libuv pool runs bkp's blocking calls: O_DIRECT device reads and writes, fsync, and the
// blksnap event wait, which holds one thread for a whole snapshot session. Four threads (the
// default) leave too few for I/O; it must be set before the pool starts.
process.env.UV_THREADPOOL_SIZE ??= '8';
// The AWS SDK warns on every run under Node 20 that its releases after January 2027 need Node 22;
// bkp pins its SDK version, and a warning on stderr would make cron mail every night.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
// Node 22.1+ can keep compiled modules on disk (under the temporary directory): a run then starts
// ~0.15 s sooner. Node 20 has no such cache; nothing changes there.
const { default: mod } = await import('node:module');
try {
  mod.enableCompileCache?.();
} catch {
  // no cache: slower start, nothing else
}
await import('../dist/src/cli/main.js');
