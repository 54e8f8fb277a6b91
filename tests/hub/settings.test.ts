import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { DEFAULT_ENDPOINT, resolveHubSettings } from "../../src/hub/settings.js";

const work = mkdtempSync(join(tmpdir(), "todo-sd-hub-settings-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe("resolveHubSettings", () => {
  it("defaults to the public hub and ~/.cache/huggingface/hub, online, no token", () => {
    const settings = resolveHubSettings({}, { HF_TOKEN_PATH: join(work, "no-token") });
    expect(settings).toEqual({
      endpoint: DEFAULT_ENDPOINT,
      cacheDir: join(homedir(), ".cache", "huggingface", "hub"),
      token: undefined,
      offline: false,
    });
  });

  it("reads the Python client's environment variables, in its order", () => {
    const env = {
      HF_ENDPOINT: "https://mirror.example/",
      HF_HOME: join(work, "home"),
      HF_TOKEN: "hf_env",
      HF_HUB_OFFLINE: "yes",
    };
    expect(resolveHubSettings({}, env)).toEqual({
      endpoint: "https://mirror.example",
      cacheDir: join(work, "home", "hub"),
      token: "hf_env",
      offline: true,
    });
    expect(resolveHubSettings({}, { ...env, HF_HUB_CACHE: join(work, "direct") }).cacheDir).toBe(
      join(work, "direct"),
    );
    expect(resolveHubSettings({}, { XDG_CACHE_HOME: join(work, "xdg") }).cacheDir).toBe(
      join(work, "xdg", "huggingface", "hub"),
    );
    for (const value of ["1", "ON", "true", " True "]) {
      expect(resolveHubSettings({}, { HF_HUB_OFFLINE: value }).offline).toBe(true);
    }
    for (const value of ["0", "", "off", "no"]) {
      expect(resolveHubSettings({}, { HF_HUB_OFFLINE: value }).offline).toBe(false);
    }
  });

  it("lets options win over the environment, and null turn the token off", () => {
    const env = { HF_ENDPOINT: "https://mirror.example", HF_TOKEN: "hf_env", HF_HUB_OFFLINE: "1" };
    const settings = resolveHubSettings(
      {
        endpoint: "http://127.0.0.1:9",
        cacheDir: join(work, "c"),
        token: "hf_opt",
        offline: false,
      },
      env,
    );
    expect(settings).toEqual({
      endpoint: "http://127.0.0.1:9",
      cacheDir: join(work, "c"),
      token: "hf_opt",
      offline: false,
    });
    expect(resolveHubSettings({ token: null }, env).token).toBeUndefined();
  });

  it("finds the token the Python login saved", () => {
    const home = join(work, "login-home");
    mkdirSync(home, { recursive: true });
    writeFileSync(join(home, "token"), "hf_saved\n");
    expect(resolveHubSettings({}, { HF_HOME: home }).token).toBe("hf_saved");
    expect(resolveHubSettings({}, { HF_HOME: home, HF_TOKEN: "hf_env" }).token).toBe("hf_env");
  });
});
