/** Messages between the codec pool and its workers (see codec-worker.ts). */

export type WorkerRequest =
  | { op: 'seal'; seq: number; buf: ArrayBuffer; offset: number; length: number; level: number; hint?: Uint8Array }
  | { op: 'open'; seq: number; envelope: ArrayBuffer; dest: ArrayBuffer; destOffset: number; expectId: ArrayBuffer; plainLength: number };

export type WorkerReply =
  | { op: 'seal'; seq: number; buf: ArrayBuffer; zero: boolean; id?: ArrayBuffer; envelope?: ArrayBuffer }
  | { op: 'open'; seq: number; dest: ArrayBuffer; error: string | undefined };
