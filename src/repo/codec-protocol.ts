/** Messages between the codec pool and its workers (see codec-worker.ts). */

export type WorkerRequest =
  | { op: 'seal'; seq: number; buf: ArrayBuffer; offset: number; length: number; level: number; hint?: Uint8Array; keepZero?: boolean }
  | {
      op: 'open';
      seq: number;
      /** Bytes read from a pack, shared with the worker (not copied, not transferred). */
      source: SharedArrayBuffer;
      at: number;
      length: number;
      dest: ArrayBuffer;
      destOffset: number;
      expectId: Uint8Array;
      plainLength: number;
    };

export type WorkerReply =
  | { op: 'seal'; seq: number; buf: ArrayBuffer; zero: boolean; id?: ArrayBuffer; envelope?: ArrayBuffer }
  | { op: 'open'; seq: number; dest: ArrayBuffer; error: string | undefined };
