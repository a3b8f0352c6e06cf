/** Real loop devices for tests (we are root here and in CI). Always detach in after(). */
import { sh } from './env.js';

export interface Loop {
  dev: string;
  detach(): void;
}

export function attachLoop(file: string): Loop {
  const dev = sh('losetup', ['--find', '--show', file]);
  let attached = true;
  return {
    dev,
    detach() {
      if (!attached) return;
      attached = false;
      try {
        sh('losetup', ['-d', dev]);
      } catch {
        // already gone
      }
    },
  };
}
