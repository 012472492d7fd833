// A backup target in S3-compatible object storage, through the official AWS SDK client
// (@aws-sdk/client-s3, an optional peer dependency loaded on first use). A backup below
// `singlePutBytes` is one PUT of the whole file from memory; a larger one becomes a multipart
// upload of `partBytes` parts, so memory stays bounded. Each upload is checked afterwards: the
// object's size, and for a single PUT the SHA-256 stored in its metadata, must be the ones
// written; store.backup() then reads the whole object back and checks its checksum and frames.
import { createHash } from 'node:crypto';

import { ErrorCodes, PrevailError } from '../core/errors.js';
import { BACKUP_NAME_RE, type BackupTarget } from './target.js';

type S3Module = typeof import('@aws-sdk/client-s3');

/** The part of an S3 client the target uses (an `S3Client` from @aws-sdk/client-s3). */
export interface S3ClientLike {
  send(command: any, options?: any): Promise<any>;
}

export interface S3TargetOptions {
  bucket: string;
  /** Backups are stored as `prefix/name` (no prefix: at the bucket's top). */
  prefix?: string;
  /** A client of your own (credentials, retries, proxies as you set them); else one is made from the options below. */
  client?: S3ClientLike;
  /** An S3-compatible service's URL (MinIO, Ceph, R2, …); default: AWS's for the region. */
  endpoint?: string;
  /** Default: AWS_REGION, else us-east-1. */
  region?: string;
  /** Default: the SDK's chain (environment, shared files, instance role). */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Path-style URLs (`endpoint/bucket/key`), which most S3-compatible services need. */
  forcePathStyle?: boolean;
  /** Backups up to this size are one PUT (held in memory); larger ones multipart. Default 64 MiB. */
  singlePutBytes?: number;
  /** Multipart part size (S3's minimum is 5 MiB). Default 64 MiB. */
  partBytes?: number;
}

const MiB = 1 << 20;

async function loadSdk(): Promise<S3Module> {
  try {
    return await import('@aws-sdk/client-s3');
  } catch (cause) {
    throw new PrevailError(
      ErrorCodes.MISSING_DEPENDENCY,
      'backups to S3 need the optional package @aws-sdk/client-s3: npm install @aws-sdk/client-s3',
      { cause },
    );
  }
}

/** Backups as objects in an S3 bucket (see S3TargetOptions). */
export class S3Target implements BackupTarget {
  readonly bucket: string;
  readonly prefix: string;
  readonly #options: S3TargetOptions;
  #sdk: Promise<{ sdk: S3Module; client: S3ClientLike }> | null = null;

  constructor(options: S3TargetOptions) {
    if (!options || typeof options.bucket !== 'string' || options.bucket === '')
      throw new PrevailError(ErrorCodes.INVALID_ARGUMENT, 'S3Target needs a bucket');
    this.bucket = options.bucket;
    this.prefix = (options.prefix ?? '').replace(/^\/+|\/+$/g, '');
    this.#options = options;
  }

  /** `s3://bucket/prefix` as options: `S3Target.fromUrl('s3://b/backups', { endpoint })`. */
  static fromUrl(url: string, options: Omit<S3TargetOptions, 'bucket' | 'prefix'> = {}): S3Target {
    const m = /^s3:\/\/([^/]+)\/?(.*)$/.exec(url);
    if (!m)
      throw new PrevailError(ErrorCodes.INVALID_ARGUMENT, `not an s3://bucket/prefix URL: ${url}`);
    return new S3Target({ ...options, bucket: m[1]!, prefix: m[2]! });
  }

  #key(name: string): string {
    return this.prefix ? `${this.prefix}/${name}` : name;
  }

  #client(): Promise<{ sdk: S3Module; client: S3ClientLike }> {
    this.#sdk ??= loadSdk().then((sdk) => {
      const o = this.#options;
      const client =
        o.client ??
        new sdk.S3Client({
          endpoint: o.endpoint,
          region: o.region ?? process.env.AWS_REGION ?? 'us-east-1',
          credentials: o.credentials,
          forcePathStyle: o.forcePathStyle,
          // Checksums only where S3 requires them: the body's SHA-256 is checked by the target
          // itself, and older S3-compatible services reject the SDK's newer checksum headers.
          requestChecksumCalculation: 'WHEN_REQUIRED',
          responseChecksumValidation: 'WHEN_REQUIRED',
        });
      return { sdk, client };
    });
    this.#sdk.catch(() => {
      this.#sdk = null; // a missing package may be installed later
    });
    return this.#sdk;
  }

  async write(
    name: string,
    chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  ): Promise<void> {
    const { sdk, client } = await this.#client();
    const upload = new Upload(sdk, client, this.bucket, this.#key(name), this.#options);
    const hash = createHash('sha256');
    let bytes = 0;
    try {
      for await (const c of chunks) {
        hash.update(c);
        bytes += c.length;
        await upload.add(c);
      }
      const sha256 = hash.digest('hex');
      await upload.finish(sha256);
      await this.#check(name, bytes, sha256);
    } catch (err) {
      await upload.abort();
      throw err;
    }
  }

  // The object as stored: its size and recorded checksum must be the ones written.
  async #check(name: string, bytes: number, sha256: string): Promise<void> {
    const { sdk, client } = await this.#client();
    const head = await client.send(
      new sdk.HeadObjectCommand({ Bucket: this.bucket, Key: this.#key(name) }),
    );
    const stored = head.Metadata?.sha256 as string | undefined; // absent after a multipart upload
    if (head.ContentLength !== bytes || (stored !== undefined && stored !== sha256))
      throw new PrevailError(
        ErrorCodes.BACKUP_CORRUPT,
        `${this.describe(name)} is stored as ${head.ContentLength} bytes (SHA-256 ${stored ?? 'not recorded'}), written as ${bytes} (${sha256})`,
        { file: this.describe(name) },
      );
  }

  async list(): Promise<string[]> {
    const { sdk, client } = await this.#client();
    const names: string[] = [];
    const prefix = this.prefix ? `${this.prefix}/` : '';
    let token: string | undefined;
    do {
      const page = await client.send(
        new sdk.ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: prefix,
          ContinuationToken: token,
        }),
      );
      for (const o of page.Contents ?? []) {
        const name = String(o.Key).slice(prefix.length);
        if (BACKUP_NAME_RE.test(name)) names.push(name);
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return names.sort();
  }

  async *read(name: string): AsyncIterable<Uint8Array> {
    const { sdk, client } = await this.#client();
    const got = await client.send(
      new sdk.GetObjectCommand({ Bucket: this.bucket, Key: this.#key(name) }),
    );
    yield* got.Body as AsyncIterable<Uint8Array>;
  }

  async remove(name: string): Promise<void> {
    const { sdk, client } = await this.#client();
    await client.send(new sdk.DeleteObjectCommand({ Bucket: this.bucket, Key: this.#key(name) }));
  }

  /** Closes the client's connections if the target made the client (one given is the caller's to close). */
  destroy(): void {
    if (this.#options.client || !this.#sdk) return;
    void this.#sdk
      .then(({ client }) => (client as { destroy?: () => void }).destroy?.())
      .catch(() => undefined);
  }

  describe(name: string): string {
    return `s3://${this.bucket}/${this.#key(name)}`;
  }
}

// One object's upload: gathered in memory up to singlePutBytes and then sent as one PUT; past
// that, a multipart upload sending each partBytes as they fill.
class Upload {
  readonly #single: number;
  readonly #part: number;
  #pending: Uint8Array[] = [];
  #size = 0;
  #uploadId: string | null = null;
  readonly #parts: { ETag: string; PartNumber: number }[] = [];

  constructor(
    readonly sdk: S3Module,
    readonly client: S3ClientLike,
    readonly bucket: string,
    readonly key: string,
    options: S3TargetOptions,
  ) {
    this.#part = Math.max(options.partBytes ?? 64 * MiB, 1);
    this.#single = Math.max(options.singlePutBytes ?? 64 * MiB, this.#part);
  }

  async add(chunk: Uint8Array): Promise<void> {
    this.#pending.push(chunk); // kept as is: a backup's pieces are never changed once made (as DirectoryTarget relies on too)
    this.#size += chunk.length;
    if (this.#uploadId === null && this.#size <= this.#single) return;
    if (this.#uploadId === null) {
      const created = await this.client.send(
        new this.sdk.CreateMultipartUploadCommand({ Bucket: this.bucket, Key: this.key }),
      );
      this.#uploadId = created.UploadId as string;
    }
    if (this.#size >= this.#part) await this.#sendPart();
  }

  async #sendPart(): Promise<void> {
    const PartNumber = this.#parts.length + 1;
    const Body = Buffer.concat(this.#pending);
    this.#pending = [];
    this.#size = 0;
    const sent = await this.client.send(
      new this.sdk.UploadPartCommand({
        Bucket: this.bucket,
        Key: this.key,
        UploadId: this.#uploadId!,
        PartNumber,
        Body,
        ContentLength: Body.length,
      }),
    );
    this.#parts.push({ ETag: sent.ETag as string, PartNumber });
  }

  async finish(sha256: string): Promise<void> {
    if (this.#uploadId === null) {
      const Body = Buffer.concat(this.#pending);
      await this.client.send(
        new this.sdk.PutObjectCommand({
          Bucket: this.bucket,
          Key: this.key,
          Body,
          ContentLength: Body.length,
          Metadata: { sha256 },
        }),
      );
      return;
    }
    // A multipart object has no checksum in its metadata (it is set at creation, before the
    // bytes are known): its size is checked here, its bytes by the read-back.
    if (this.#size > 0) await this.#sendPart();
    await this.client.send(
      new this.sdk.CompleteMultipartUploadCommand({
        Bucket: this.bucket,
        Key: this.key,
        UploadId: this.#uploadId,
        MultipartUpload: { Parts: this.#parts },
      }),
    );
    this.#uploadId = null;
  }

  async abort(): Promise<void> {
    if (this.#uploadId === null) return;
    await this.client
      .send(
        new this.sdk.AbortMultipartUploadCommand({
          Bucket: this.bucket,
          Key: this.key,
          UploadId: this.#uploadId,
        }),
      )
      .catch(() => undefined);
  }
}
