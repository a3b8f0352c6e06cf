#!/usr/bin/env node
// The libuv pool runs bkp's blocking calls: O_DIRECT device reads and writes, fsync, and the
// blksnap event wait, which holds one thread for a whole snapshot session. Four threads (the
// default) leave too few for I/O; it must be set before the pool starts.
process.env.UV_THREADPOOL_SIZE ??= '8';
await import('../dist/src/cli/main.js');
