/**
 * Gathers sealed envelopes into packs and stores each pack when it is full. Memory is bounded:
 * at most one pack being filled plus `maxUploads` packs being stored; `add` waits when full.
 * A pack is filled into one contiguous buffer, so that targets store it without gathering it
 * again (an S3 upload needs one body it can re-send on a retry) and envelopes are freed at once.
 */
import pLimit from 'p-limit';
import { encodePackTrailer, newPackId, packKey, type PackEntry } from './pack.js';
import type { ChunkLocation } from './chunk-map.js';
import type { Target } from '../storage/target.js';
import { crashPoint } from '../faults.js';

export class PackWriter {
  private packId = newPackId();
  private buf: Buffer | undefined;
  private entries: PackEntry[] = [];
  private bytes = 0;
  private readonly limit;
  private readonly inflight = new Set<Promise<void>>();
  private error: unknown;
  /** Fired by the first upload that fails for good: the others stop at once (no bytes sent for a run that failed). */
  private readonly abandon = new AbortController();

  constructor(
    private readonly target: Target,
    private readonly packSize: number,
    private readonly maxUploads = 2,
  ) {
    this.limit = pLimit(maxUploads);
  }

  /** Queues an envelope; returns where it will live once the pack is stored. */
  async add(id: Buffer, envelope: Buffer, plainLength: number): Promise<ChunkLocation> {
    if (this.error) throw this.error;
    const loc = { packId: this.packId, offset: this.bytes, length: envelope.length };
    this.append(envelope);
    this.entries.push({ id, offset: this.bytes, length: envelope.length, plainLength });
    this.bytes += envelope.length;
    if (this.bytes >= this.packSize) await this.seal();
    return loc;
  }

  /** Copies bytes to the end of the pack being filled (at `this.bytes`), growing it when needed. */
  private append(data: Uint8Array): void {
    const need = this.bytes + data.length;
    if (!this.buf || this.buf.length < need) {
      const grown = Buffer.allocUnsafeSlow(Math.max(need, this.buf ? this.buf.length * 2 : this.packSize + (this.packSize >> 4)));
      this.buf?.copy(grown, 0, 0, this.bytes);
      this.buf = grown;
    }
    this.buf.set(data, this.bytes);
  }

  private async seal(): Promise<void> {
    if (this.entries.length === 0) return;
    const trailer = encodePackTrailer(this.entries);
    this.append(trailer);
    const body = this.buf!.subarray(0, this.bytes + trailer.length);
    const key = packKey(this.packId);
    this.packId = newPackId();
    this.buf = undefined;
    this.entries = [];
    this.bytes = 0;
    // backpressure: wait for a free upload slot before filling the next pack
    while (this.inflight.size >= this.maxUploads) await Promise.race(this.inflight);
    const p: Promise<void> = this.limit(() => this.target.put(key, body, { signal: this.abandon.signal })).then(
      () => {
        crashPoint('pack-stored');
        this.inflight.delete(p);
      },
      (e: unknown) => {
        this.error ??= e;
        this.abandon.abort(this.error);
        this.inflight.delete(p);
      },
    );
    this.inflight.add(p);
  }

  /** Stores the partial pack and waits until every pack is durable. Throws the first storage error. */
  async flush(): Promise<void> {
    if (!this.error) await this.seal();
    await Promise.all(this.inflight);
    if (this.error) throw this.error;
  }
}
