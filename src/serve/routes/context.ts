/** What every route module is given: the job interface and the server's settings. */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Access } from "../access.js";
import type { JobBackend } from "../job-backend.js";
import type { ServerInfo, ValidationContext } from "../protocol.js";

export interface ServerContext {
  readonly jobs: JobBackend;
  readonly access: Access;
  readonly info: ServerInfo;
  readonly validation: ValidationContext;
  /** Every client sees every finished job in the history (else only its own). */
  readonly sharedHistory: boolean;
  /** Largest JSON body without images, and with base64 images (img2img). */
  readonly maxBodyBytes: number;
  readonly maxImageBodyBytes: number;
  readonly log: (line: string) => void;
  /** Open event streams, ended when the server closes. */
  readonly streams: Set<ServerResponse>;
}

export interface RequestContext {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly url: URL;
  readonly method: string;
  /** The API key's id, or null when keys are not required. */
  readonly keyId: string | null;
}

export interface RouteModule {
  /** Whether this module answers the path (it then answers every method and error itself). */
  matches(path: string): boolean;
  /** Whether the path's requests need an API key when keys are required. */
  needsKey(path: string, method: string): boolean;
  handle(request: RequestContext): Promise<void>;
}
