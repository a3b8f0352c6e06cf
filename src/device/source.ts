/**
 * What the backup pipeline reads from: a block device, an image file, or a snapshot image.
 * The pipeline never cares which; the blksnap layer hands it the snapshot image as one of these.
 */
export interface BlockSource {
  /** The path the user named (for messages and the index header). */
  readonly path: string;
  /** Size in bytes. */
  readonly size: number;
  /** Logical sector size in bytes (512 for image files). */
  readonly logicalBlockSize: number;
  /**
   * Read up to `length` bytes at `position` into `buffer` starting at buffer offset 0.
   * Resolves with the number of bytes read (less than `length` only at the end of the source).
   */
  read(buffer: Buffer, length: number, position: number): Promise<number>;
  close(): Promise<void>;
}
