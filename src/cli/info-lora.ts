/**
 * `todo-sd info <lora.safetensors> [-m <model>]`: what a LoRA file holds (layout, the family it
 * looks made for, ranks, alphas, the modules it changes) and, given a model, how many of its keys
 * land on that model's weights.
 */
import { type LoadOptions, LoraFile } from "../index.js";
import { loraModelOf } from "../lora/apply-loras.js";
import { describeFamilies, guessLoraFamily, matchLora } from "../lora/lora-targets.js";
import { openModelFiles } from "../pipelines/load.js";
import { familyOf } from "../pipelines/model-plan.js";

export interface LoraInfo {
  readonly kind: "lora";
  readonly source: string;
  readonly name: string;
  readonly layout: string;
  readonly hash: string;
  readonly sha256: string;
  readonly families: readonly string[];
  readonly familyEvidence: string;
  readonly keys: number;
  readonly ranks: readonly number[];
  readonly alphas: readonly number[];
  /** Modules per component, and per kind of layer (`attn1.to_q`, `q_proj`, `conv1`, ...). */
  readonly modules: Readonly<Record<string, { total: number; layers: Record<string, number> }>>;
  readonly otherAdapters: readonly string[];
  readonly model?: {
    readonly source: string;
    readonly family: string;
    readonly matchedKeys: number;
    readonly unmatched: readonly { key: string; reason: string }[];
  };
}

/** The kind of layer a module path ends with (its own name, with attn1/attn2 where it has one). */
const LAYER_NAME =
  /(?:^|[._])((?:attn[12][._])?(?:to_q|to_k|to_v|to_out[._]0)|ff[._]net[._]0[._]proj|ff[._]net[._]2|proj_in|proj_out|[qkv]_proj|out_proj|fc[12]|conv[12]|conv_shortcut|time_emb_proj|conv_in|conv_out|[a-z]+)$/;

function layerName(path: string): string {
  const match = LAYER_NAME.exec(path);
  return (match?.[1] ?? path).replace(/_(?=\d)|(?<=\d)_|(?<=attn[12])_|(?<=ff)_(?=net)/g, ".");
}

export async function loraInfo(
  path: string,
  model: string | undefined,
  loadOptions: LoadOptions,
): Promise<LoraInfo> {
  const lora = LoraFile.open(path);
  try {
    const guess = guessLoraFamily(lora);
    const modules: Record<string, { total: number; layers: Record<string, number> }> = {};
    for (const module of lora.modules) {
      const entry = modules[module.component] ?? { total: 0, layers: {} };
      modules[module.component] = entry;
      entry.total++;
      const layer = layerName(module.path);
      entry.layers[layer] = (entry.layers[layer] ?? 0) + 1;
    }
    const sorted = (values: number[]) => [...new Set(values)].sort((a, b) => a - b);
    let modelInfo: LoraInfo["model"];
    if (model) {
      const { files } = await openModelFiles(model, loadOptions);
      try {
        const family = familyOf(files);
        const match = matchLora(lora, loraModelOf(files, family));
        modelInfo = {
          source: model,
          family,
          matchedKeys: match.matchedKeys,
          unmatched: match.unmatched.map(({ key, reason }) => ({ key, reason })),
        };
      } finally {
        files.close();
      }
    }
    return {
      kind: "lora",
      source: path,
      name: lora.name,
      layout: lora.layout,
      hash: lora.hash,
      sha256: lora.sha256,
      families: guess.families,
      familyEvidence: describeFamilies(guess),
      keys: lora.file.keys().length,
      ranks: sorted(lora.modules.map((m) => m.rank)),
      alphas: sorted(lora.modules.map((m) => m.alpha)),
      modules,
      otherAdapters: lora.otherAdapters,
      model: modelInfo,
    };
  } finally {
    lora.close();
  }
}

function range(values: readonly number[]): string {
  if (values.length <= 3) return values.join(", ");
  return `${values[0]} to ${values[values.length - 1]} (${values.length} values)`;
}

export function formatLoraInfo(info: LoraInfo): string {
  const lines = [
    `${info.source}: LoRA, ${info.layout} layout, for ${info.familyEvidence}`,
    `hash ${info.hash} (web UIs), sha256 ${info.sha256}`,
    `${info.keys} keys; rank ${range(info.ranks)}; alpha ${range(info.alphas)}`,
    "modules:",
  ];
  for (const [component, { total, layers }] of Object.entries(info.modules)) {
    const kinds = Object.entries(layers)
      .map(([layer, count]) => `${layer} ${count}`)
      .join(", ");
    lines.push(`  ${component}: ${total} (${kinds})`);
  }
  if (info.otherAdapters.length > 0)
    lines.push(`not supported, ignored: ${info.otherAdapters.join(", ")}`);
  if (info.model) {
    const { matchedKeys, unmatched } = info.model;
    lines.push(
      `against ${info.model.source} (${info.model.family}): ${matchedKeys} of ${info.keys} keys match its weights`,
    );
    for (const { key, reason } of unmatched.slice(0, 5))
      lines.push(`  unmatched ${key}: ${reason}`);
    if (unmatched.length > 5) lines.push(`  and ${unmatched.length - 5} more unmatched`);
  }
  return `${lines.join("\n")}\n`;
}
