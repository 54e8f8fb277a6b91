/**
 * Where the hub is, where its cache lives, which token to send, and whether the network may
 * be used at all. Options given in code win; then the environment variables the Python hub
 * client reads, so one set of settings serves both:
 *
 * | setting | variables, first set wins | default |
 * | --- | --- | --- |
 * | endpoint | `HF_ENDPOINT` | `https://huggingface.co` |
 * | cache | `HF_HUB_CACHE`, `HUGGINGFACE_HUB_CACHE`, `$HF_HOME/hub` | `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub` |
 * | token | `HF_TOKEN`, `HUGGING_FACE_HUB_TOKEN`, the file `HF_TOKEN_PATH` or `$HF_HOME/token` (written by the Python `login`) | none |
 * | offline | `HF_HUB_OFFLINE` = 1, on, yes or true | off |
 */
import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join, resolve } from "node:path";

export const DEFAULT_ENDPOINT = "https://huggingface.co";

export interface HubSettingsOptions {
  /** The hub's base URL (a mirror, or a local server in tests). */
  readonly endpoint?: string;
  /** The hub cache folder (the one that holds `models--org--name`). */
  readonly cacheDir?: string;
  /** An access token, or `null` to send none even when the environment has one. */
  readonly token?: string | null;
  /** Use the cache only; never touch the network. */
  readonly offline?: boolean;
}

export interface HubSettings {
  readonly endpoint: string;
  readonly cacheDir: string;
  readonly token: string | undefined;
  readonly offline: boolean;
}

type Environment = Readonly<Record<string, string | undefined>>;

export function resolveHubSettings(
  options: HubSettingsOptions = {},
  env: Environment = process.env,
): HubSettings {
  const home = hfHome(env);
  const endpoint = (options.endpoint ?? nonEmpty(env.HF_ENDPOINT) ?? DEFAULT_ENDPOINT).replace(
    /\/+$/,
    "",
  );
  const cacheDir = expandHome(
    options.cacheDir ??
      nonEmpty(env.HF_HUB_CACHE) ??
      nonEmpty(env.HUGGINGFACE_HUB_CACHE) ??
      join(home, "hub"),
  );
  const token =
    options.token === null ? undefined : (nonEmpty(options.token) ?? tokenFromEnvironment(env));
  const offline = options.offline ?? isTrue(env.HF_HUB_OFFLINE);
  return { endpoint, cacheDir: resolve(cacheDir), token, offline };
}

function hfHome(env: Environment): string {
  const explicit = nonEmpty(env.HF_HOME);
  if (explicit) return expandHome(explicit);
  const xdg = nonEmpty(env.XDG_CACHE_HOME);
  return join(xdg ? expandHome(xdg) : join(homedir(), ".cache"), "huggingface");
}

function tokenFromEnvironment(env: Environment): string | undefined {
  const direct = nonEmpty(env.HF_TOKEN) ?? nonEmpty(env.HUGGING_FACE_HUB_TOKEN);
  if (direct) return direct.trim();
  const file = expandHome(nonEmpty(env.HF_TOKEN_PATH) ?? join(hfHome(env), "token"));
  if (!existsSync(file)) return undefined;
  return nonEmpty(readFileSync(file, "utf8").trim());
}

function isTrue(value: string | undefined): boolean {
  return value !== undefined && ["1", "ON", "YES", "TRUE"].includes(value.trim().toUpperCase());
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.length === 0 ? undefined : value;
}

function expandHome(path: string): string {
  return path === "~" || path.startsWith("~/") ? join(homedir(), path.slice(1)) : path;
}
