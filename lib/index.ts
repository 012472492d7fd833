export { RaftNode } from './engine/raft-node.js';
export type { CloseOptions, ProposeOptions } from './engine/raft-node.js';
export type { RaftNodeOptions } from './engine/options.js';
export type { TlsOptions } from './engine/member-transport.js';
export type {
  ApplyMeta,
  Fsm,
  Member,
  MemberRole,
  NodeRole,
  RaftNodeStatus,
} from './engine/types.js';
export { versions } from './engine/native.js';
export { ErrorCodes, PrevailError, isPrevailError } from './core/errors.js';
export type { ErrorCode, MemberRef } from './core/errors.js';
export { Store, open, collection, defineSchema } from './store.js';
export type {
  ArgsOf,
  CollectionDef,
  CollectionReader,
  CollectionWriter,
  CommandContext,
  HashIndexReader,
  IndexBuilder,
  IndexDef,
  IndexKind,
  PersistentIndexReader,
  RangeOptions,
  ResultOf,
  Schema,
  SortedIndexReader,
  StateOf,
  Stored,
  StoreOptions,
  UniqueIndexReader,
  ViewOf,
} from './store.js';
export { channels, registerPrometheus, BUCKETS_MS } from './metrics.js';
export type { HistogramSnapshot, MetricsSnapshot, PromClientLike } from './metrics.js';
export type {
  LeaderJob,
  LeaderJobContext,
  LeaderJobHandle,
  LeaderJobOptions,
  Schedule,
} from './jobs.js';
export type {
  Consistency,
  Health,
  LinkOptions,
  ReadOptions,
  WriteOptions,
} from './cluster/cluster-link.js';
export { SortedIndex, PersistentSortedIndex, compareKeys } from './sorted-index/index.js';
export type { IndexKey, Id } from './sorted-index/index.js';
export {
  adminHandler,
  type AdminHandler,
  type AdminMember,
  type AdminOptions,
  type AdminSource,
  type AdminStatus,
  type LeaderChange,
} from './admin/admin.js';
export type { AdminMemberSchema, AdminSchema } from './admin/schema.js';
export type { ChartData, ChartPoint } from './admin/monitor.js';
export { inspectDataDir, runInspect, upgradeCheck, runUpgradeCheck } from './inspect/index.js';
export type { UpgradeCheckOptions, UpgradeCheckResult } from './inspect/index.js';
export { restoreBackup } from './backup/restore.js';
export type { RestoreOptions, RestoreResult } from './backup/restore.js';
export { verifyBackup, BACKUP_FORMAT } from './backup/format.js';
export type { BackupHeader, BackupMember, VerifiedBackup } from './backup/format.js';
export { DirectoryTarget } from './backup/target.js';
export { S3Target } from './backup/s3.js';
export type { S3TargetOptions } from './backup/s3.js';
export type { AutoBackupOptions, AutoBackupEvent } from './backup/auto.js';
export { backupsToDelete, parseRetention } from './backup/retention.js';
export type { BackupInfo, RetentionPolicy } from './backup/retention.js';
export type { BackupTarget } from './backup/target.js';
export type { BackupDestination, BackupOptions, BackupResult } from './backup/take.js';
export { kvSchema } from './service/kv-schema.js';
export type { KvStore } from './service/kv-schema.js';
export { startService } from './service/service.js';
export { operationsHandler } from './service/operations.js';
export type { OperationsHandler, OperationsOptions, OpsStore } from './service/operations.js';
export type { Service, ServiceOptions } from './service/service.js';
export { httpErrorOf, httpStatusOf } from './service/http-errors.js';
export type { HttpErrorAnswer } from './service/http-errors.js';
export type { AuthOptions, AuthUser, Permission } from './core/auth.js';
export type { TlsMaterial } from './core/tls-files.js';
export {
  createCa,
  createClientCert,
  createNodeCert,
  describeCert,
  describeCrl,
  describeCrls,
  loadTlsFiles,
  revoke,
  writeCertFiles,
  writeCrlFile,
} from './certs/index.js';
export type {
  CaOptions,
  CertAndKey,
  CertDescription,
  ClientCertOptions,
  CrlDescription,
  RevokedCert,
  NodeCertOptions,
} from './certs/index.js';
