/**
 * How each error code maps onto containerd's `errdefs` kinds and gRPC status codes, so a shim
 * returns the error a containerd client expects (docs/errors.md). The table is typed over every
 * `UvmErrorCode`: adding a code without mapping it does not compile.
 */
import { UvmError, type UvmErrorCode } from './errors.js';

/** containerd's `errdefs` error kinds (`errdefs.ErrNotFound` → `'NotFound'`). */
export type ErrdefsKind =
  | 'Unknown'
  | 'InvalidArgument'
  | 'NotFound'
  | 'AlreadyExists'
  | 'PermissionDenied'
  | 'ResourceExhausted'
  | 'FailedPrecondition'
  | 'Conflict'
  | 'NotModified'
  | 'Aborted'
  | 'OutOfRange'
  | 'NotImplemented'
  | 'Internal'
  | 'Unavailable'
  | 'DataLoss'
  | 'Unauthenticated'
  | 'Canceled'
  | 'DeadlineExceeded';

/** gRPC status codes (google.golang.org/grpc/codes). */
export const GrpcCode = {
  OK: 0,
  Canceled: 1,
  Unknown: 2,
  InvalidArgument: 3,
  DeadlineExceeded: 4,
  NotFound: 5,
  AlreadyExists: 6,
  PermissionDenied: 7,
  ResourceExhausted: 8,
  FailedPrecondition: 9,
  Aborted: 10,
  OutOfRange: 11,
  Unimplemented: 12,
  Internal: 13,
  Unavailable: 14,
  DataLoss: 15,
  Unauthenticated: 16,
} as const;
export type GrpcCode = (typeof GrpcCode)[keyof typeof GrpcCode];

/** The containerd view of one error code. */
export interface ErrorKind {
  errdefs: ErrdefsKind;
  /** The gRPC status containerd's `errgrpc.ToGRPC` gives that kind. */
  grpc: GrpcCode;
}

const kind = (errdefs: ErrdefsKind, grpc: GrpcCode): ErrorKind => Object.freeze({ errdefs, grpc });
const C = GrpcCode;

const UNKNOWN_KIND = kind('Unknown', C.Unknown);

/** Every error code → its containerd `errdefs` kind and gRPC status (exhaustive by type). */
export const ERROR_KINDS: Readonly<{ [Code in UvmErrorCode]: ErrorKind }> = Object.freeze({
  NO_SLOT: kind('ResourceExhausted', C.ResourceExhausted),
  LAYER_TOO_LARGE: kind('ResourceExhausted', C.ResourceExhausted),
  CONFIG_CONFLICT: kind('Conflict', C.FailedPrecondition),
  MOUNT_CONFLICT: kind('Conflict', C.FailedPrecondition),
  ALREADY_RELEASED: kind('FailedPrecondition', C.FailedPrecondition),
  TEARDOWN_FAILED: kind('FailedPrecondition', C.FailedPrecondition),
  NOT_SUPPORTED: kind('NotImplemented', C.Unimplemented),
  INVALID_ARGUMENT: kind('InvalidArgument', C.InvalidArgument),
  INVALID_SPEC: kind('InvalidArgument', C.InvalidArgument),
  ACCESS_DENIED: kind('PermissionDenied', C.PermissionDenied),
  HANDLE_CLOSED: kind('FailedPrecondition', C.FailedPrecondition),
  HCS_ERROR: kind('Unknown', C.Unknown),
  TIMEOUT: kind('DeadlineExceeded', C.DeadlineExceeded),
  ABORTED: kind('Canceled', C.Canceled),
  NOT_FOUND: kind('NotFound', C.NotFound),
  INVALID_STATE: kind('FailedPrecondition', C.FailedPrecondition),
  RELEASE_FAILED: kind('Internal', C.Internal),
  LIBRARY_LOAD_FAILED: kind('Unavailable', C.Unavailable),
  RECOVERY_FAILED: kind('Internal', C.Internal),
  UVM_TERMINATED: kind('FailedPrecondition', C.FailedPrecondition),
  CONTAINER_EXISTS: kind('AlreadyExists', C.AlreadyExists),
  UVM_EXISTS: kind('AlreadyExists', C.AlreadyExists),
  JOURNAL_IN_USE: kind('FailedPrecondition', C.FailedPrecondition),
  JOURNAL_VERSION: kind('FailedPrecondition', C.FailedPrecondition),
  UVM_EXITED: kind('Unavailable', C.Unavailable),
  BRIDGE_FAILED: kind('Unavailable', C.Unavailable),
  GUEST_CONNECT_TIMEOUT: kind('DeadlineExceeded', C.DeadlineExceeded),
  HVSOCKET_ERROR: kind('Unavailable', C.Unavailable),
});

/**
 * The containerd view of any error: a `UvmError` (or `UvmAggregateError`, `HcsError`) by its code;
 * anything else is `Unknown` / gRPC 2.
 */
export function errorKind(err: unknown): ErrorKind {
  return UvmError.is(err) ? ERROR_KINDS[err.code] : UNKNOWN_KIND;
}
