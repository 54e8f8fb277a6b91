/**
 * Who may talk to the server: Host and Origin checks against DNS rebinding and cross-site
 * requests, API keys (Bearer tokens compared in constant time), and the client tokens that tie
 * jobs to the client that submitted them.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { isIP } from "node:net";
import { hostname, networkInterfaces } from "node:os";
import { HttpError } from "./http.js";

/** The environment variable that holds API keys, comma-separated. */
export const API_KEYS_ENV = "TODO_SD_API_KEYS";
export const CLIENT_COOKIE = "todo_sd_client";
export const CLIENT_HEADER = "x-client-token";

export function isLoopback(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, "").toLowerCase();
  return (
    bare === "localhost" ||
    bare === "::1" ||
    bare === "0:0:0:0:0:0:0:1" ||
    (isIP(bare) === 4 && bare.startsWith("127."))
  );
}

function isWildcard(host: string): boolean {
  return host === "0.0.0.0" || host === "::" || host === "[::]";
}

function sha256(text: string): Buffer {
  return createHash("sha256").update(text, "utf8").digest();
}

export interface AccessOptions {
  /** The address the server listens on. */
  readonly host: string;
  /** API keys; empty: none required (allowed on loopback only). */
  readonly apiKeys: readonly string[];
  /** Further Host names to accept (a reverse proxy's, a DNS name of this machine). */
  readonly allowedHosts?: readonly string[];
}

/** A client's identity: the hash of its token (never the token itself) and the token if new. */
export interface ClientIdentity {
  readonly id: string;
  /** Set when the server issued the token on this request. */
  readonly issued: string | undefined;
  /** The token as the client sent it, or as issued. */
  readonly token: string;
}

export class Access {
  private readonly keyDigests: readonly Buffer[];
  private readonly hosts: ReadonlySet<string>;

  constructor(readonly options: AccessOptions) {
    this.keyDigests = options.apiKeys.map(sha256);
    const hosts = new Set<string>(["localhost", "127.0.0.1", "::1"]);
    const add = (name: string) => hosts.add(name.replace(/^\[|\]$/g, "").toLowerCase());
    add(options.host);
    for (const name of options.allowedHosts ?? []) add(name);
    if (isWildcard(options.host)) {
      // Bound to every interface: this machine's addresses and name are its Host names.
      add(hostname());
      for (const list of Object.values(networkInterfaces()))
        for (const entry of list ?? []) add(entry.address);
    }
    this.hosts = hosts;
  }

  get keysRequired(): boolean {
    return this.keyDigests.length > 0;
  }

  /** Refuses a Host header that names another server (DNS rebinding). */
  checkHost(req: IncomingMessage): void {
    const header = req.headers.host;
    if (!header) throw new HttpError(400, "the request has no Host header");
    const name = hostOf(header);
    if (!this.hosts.has(name))
      throw new HttpError(
        421,
        `Host "${header}" is not a name of this server; start it with --allowed-host ${name} to accept it`,
      );
  }

  /** Refuses requests a browser sends from another site's page. */
  checkOrigin(req: IncomingMessage): void {
    const origin = req.headers.origin;
    if (origin !== undefined) {
      const host = URL.canParse(origin) ? new URL(origin).host : undefined;
      if (host?.toLowerCase() !== (req.headers.host ?? "").toLowerCase())
        throw new HttpError(403, `cross-origin requests are refused (Origin ${origin})`);
    } else if (req.headers["sec-fetch-site"] === "cross-site") {
      throw new HttpError(403, "cross-site requests are refused");
    }
  }

  /**
   * The API key's id (a short hash) when keys are required; 401 without a right one. Every key
   * is compared, whatever matches first, so the time taken says nothing about the keys.
   */
  authenticate(req: IncomingMessage): string | null {
    if (this.keyDigests.length === 0) return null;
    const header = req.headers.authorization ?? "";
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    const challenge = { "www-authenticate": 'Bearer realm="todo-sd"' };
    if (!match)
      throw new HttpError(
        401,
        "an API key is required: send Authorization: Bearer <key>",
        challenge,
      );
    const digest = sha256(match[1]);
    let found = -1;
    this.keyDigests.forEach((key, index) => {
      if (timingSafeEqual(key, digest) && found < 0) found = index;
    });
    if (found < 0) throw new HttpError(401, "the API key is not valid", challenge);
    return digest.subarray(0, 8).toString("hex");
  }

  /** The client's token from its header, cookie or `token` query; a new one when it has none. */
  identify(req: IncomingMessage, url: URL, issue: boolean): ClientIdentity | undefined {
    const token =
      headerValue(req.headers[CLIENT_HEADER]) ??
      cookie(req, CLIENT_COOKIE) ??
      url.searchParams.get("token") ??
      undefined;
    if (token !== undefined) {
      if (!/^[A-Za-z0-9_-]{16,128}$/.test(token))
        throw new HttpError(400, "client token: 16 to 128 letters, digits, - or _");
      return { id: sha256(token).toString("hex"), issued: undefined, token };
    }
    if (!issue) return undefined;
    const fresh = randomBytes(24).toString("base64url");
    return { id: sha256(fresh).toString("hex"), issued: fresh, token: fresh };
  }

  /** Sets the cookie of a token issued on this request (the page sends it back by itself). */
  static remember(res: ServerResponse, identity: ClientIdentity): void {
    if (identity.issued)
      res.setHeader(
        "set-cookie",
        `${CLIENT_COOKIE}=${identity.issued}; Path=/; HttpOnly; SameSite=Strict; Max-Age=31536000`,
      );
  }
}

/** Whether a client's id owns a job, compared in constant time. */
export function sameClient(a: string, b: string): boolean {
  const x = Buffer.from(a, "utf8");
  const y = Buffer.from(b, "utf8");
  return x.length === y.length && timingSafeEqual(x, y);
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function cookie(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? "").split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return rest.join("=");
  }
  return undefined;
}

/** The host name of a Host header, without its port or IPv6 brackets. */
function hostOf(header: string): string {
  const trimmed = header.trim().toLowerCase();
  if (trimmed.startsWith("[")) return trimmed.slice(1, trimmed.indexOf("]"));
  const colon = trimmed.lastIndexOf(":");
  return colon >= 0 ? trimmed.slice(0, colon) : trimmed;
}

/** API keys from the flags and the environment variable, deduplicated, blanks dropped. */
export function apiKeysFrom(flags: readonly string[], env: string | undefined): string[] {
  const keys = [...flags, ...(env ?? "").split(",")].map((k) => k.trim()).filter((k) => k !== "");
  for (const key of keys)
    if (key.length < 16) throw new Error("API keys must be at least 16 characters long");
  return [...new Set(keys)];
}
