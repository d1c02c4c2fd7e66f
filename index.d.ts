// Type definitions for obs-native: the esdk-obs-nodejs-compatible ObsClient.

interface ObsClientOptions {
  access_key_id?: string;
  secret_access_key?: string;
  security_token?: string;
  /** `host`, `host:port`, `http://host:port` or `https://host`; required. */
  server: string;
  is_secure?: boolean;
  port?: number;
  path_style?: boolean;
  /** As the official SDK: negotiated per bucket on a virtual-hosted URL unless `is_signature_negotiation` is false ('obs' then signs OBS, 'v2' V2); a path-style, custom-domain (`is_cname`) or IP server negotiates nothing and signs V2. 'v4' with a `region` is AWS V4 everywhere; without one, as 'v2'. */
  signature?: 'obs' | 'v2' | 'v4';
  is_signature_negotiation?: boolean;
  region?: string;
  /** Seconds without any byte moving before a request is given up (default 60). */
  timeout?: number;
  /** Retries of a failed request (default 3). */
  max_retry_count?: number;
  /** false (default): accept any certificate; true: system roots; a path: that CA bundle. */
  ssl_verify?: boolean | string;
  is_cname?: boolean;
  max_connections?: number;
  user_agent?: string;
  /** An HTTP proxy all requests go through, e.g. `http://127.0.0.1:3128` (obs-native only). */
  proxy?: string;
  [other: string]: unknown;
}

interface ResumeHandle {
  /** Stop; keep the checkpoint record and the multipart upload for a later call. */
  cancel(): void;
  /** Stop; abort the multipart upload and remove the checkpoint record. */
  abort(): void;
}

interface UploadFileParams {
  Bucket: string;
  Key: string;
  UploadFile: string;
  /** Bytes, 100 KB .. 5 GB, default 5 MB. */
  PartSize?: number;
  /** Parts in flight, default 20. */
  TaskNum?: number;
  EnableCheckpoint?: boolean;
  /** Default `<UploadFile>.upload_record`. */
  CheckpointFile?: string;
  EnableCheckSum?: boolean;
  ContentType?: string;
  ACL?: string;
  Metadata?: Record<string, string>;
  WebsiteRedirectLocation?: string;
  SseKms?: string;
  SseKmsKey?: string;
  SseC?: string;
  SseCKey?: string;
  /** Days until the object expires: a whole number, or a string of one. */
  Expires?: number | string;
  ProgressCallback?: (transferredBytes: number, totalBytes: number, seconds: number) => void;
  ResumeCallback?: (handle: ResumeHandle) => void;
  /** Cancels like ResumeCallback's cancel() (record and upload kept); rejects with an AbortError. obs-native only. */
  AbortSignal?: AbortSignal;
}

interface CommonMsg {
  Status: number;
  Code: string;
  Message: string;
  HostId: string;
  RequestId: string;
  Id2?: string;
  InterfaceResult: null;
  QosDelayTime: string;
  [other: string]: unknown;
}

interface UploadFileResult {
  CommonMsg: CommonMsg;
  InterfaceResult: {
    RequestId?: string;
    /** The complete's XML fields: `''` where its answer lacks one, absent when the answer had no body. */
    Location?: string;
    Bucket?: string;
    Key?: string;
    ETag?: string;
    VersionId?: string;
    EncodingType?: string;
    [other: string]: unknown;
  };
}

/** `code` is stable; `String(err)` is `Code:Message` as the reference SDK reports it. */
declare class ObsError extends Error {
  code: string;
  status?: number;
  requestId?: string;
  hostId?: string;
  uploadId?: string;
  partNumber?: number;
  retryable?: boolean;
  /** The server's own error code and message, where it gave them. */
  serviceCode?: string;
  serviceMessage?: string;
}

declare class ObsClient {
  constructor(options: ObsClientOptions);
  uploadFile(params: UploadFileParams): Promise<UploadFileResult>;
  uploadFile(params: UploadFileParams, callback: (err: ObsError | null, result?: UploadFileResult) => void): void;
  UploadFile: ObsClient['uploadFile'];
  refresh(accessKeyId: string, secretAccessKey: string, securityToken?: string): void;
  Refresh: ObsClient['refresh'];
  close(): void;
  Close: ObsClient['close'];
  /** Accepted for compatibility; obs-native writes no SDK log. */
  initLog(options?: Record<string, unknown>): void;
  InitLog: ObsClient['initLog'];
  /** Canned ACLs (for `ACL`) and part sizes, as the reference SDK's `enums`. */
  readonly enums: {
    readonly AclPrivate: 'private';
    readonly AclPublicRead: 'public-read';
    readonly AclPublicReadWrite: 'public-read-write';
    readonly AclPublicReadDelivered: 'public-read-delivered';
    readonly AclPublicReadWriteDelivered: 'public-read-write-delivered';
    readonly AclAuthenticatedRead: 'authenticated-read';
    readonly AclBucketOwnerRead: 'bucket-owner-read';
    readonly AclBucketOwnerFullControl: 'bucket-owner-full-control';
    readonly AclLogDeliveryWrite: 'log-delivery-write';
    readonly KB: number;
    readonly MB: number;
    readonly GB: number;
    readonly MAX_UPLOAD_PART_COUNT: number;
    readonly MAX_UPLOAD_PART_SIZE: number;
    readonly DEFAULT_UPLOAD_PART_SIZE: number;
    readonly MIN_UPLOAD_PART_SIZE: number;
  };
}

declare namespace ObsClient {
  export {
    ObsClient,
    ObsError,
    ObsClientOptions,
    UploadFileParams,
    UploadFileResult,
    ResumeHandle,
    CommonMsg,
  };
}

export = ObsClient;
