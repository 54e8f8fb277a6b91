/**
 * Kernel variants and what each needs from the adapter, as a frozen table plus one pure function
 * (the style of transformers.js's device and dtype tables): the kernels never look at features
 * themselves, they are handed a variant.
 */
import {
  type GpuCapabilities,
  type KernelPath,
  type MatrixShape,
  type PathRequest,
  type StorageType,
  SUBGROUP_MATRIX_FEATURE,
} from "./types.js";

export interface KernelVariant {
  readonly path: KernelPath;
  readonly storage: StorageType;
  /** The subgroup-matrix shape the tensor-core path multiplies with. */
  readonly matrix?: MatrixShape;
  /** Subgroup size the tensor-core path was built for. */
  readonly subgroupSize?: number;
}

interface VariantRequirement {
  readonly path: KernelPath;
  readonly storage: StorageType;
  readonly features: readonly string[];
  /** Needs an f16 -> f32 subgroup-matrix shape. */
  readonly matrix: boolean;
}

/** Every variant the kernels are written for, fastest first. */
export const KERNEL_VARIANTS: readonly VariantRequirement[] = Object.freeze([
  {
    path: "tensor-core",
    storage: "f16",
    features: ["shader-f16", "subgroups", SUBGROUP_MATRIX_FEATURE],
    matrix: true,
  },
  { path: "portable", storage: "f16", features: ["shader-f16"], matrix: false },
  { path: "portable", storage: "f32", features: [], matrix: false },
] as const);

/** A variant as reports name it: `tensor cores, f16`, `portable, f32`, ... */
export function kernelPathLabel(variant: Pick<KernelVariant, "path" | "storage">): string {
  return `${variant.path === "tensor-core" ? "tensor cores" : "portable"}, ${variant.storage}`;
}

/**
 * The preferred subgroup-matrix shape: the largest K first (fewest instructions per tile), then
 * the largest N. On NVIDIA the 16x8x16 shape is the hardware's own mma instruction; 16x16x16 is
 * issued as two of them.
 */
export function preferredMatrixShape(shapes: readonly MatrixShape[]): MatrixShape | undefined {
  return [...shapes].sort((a, b) => b.k - a.k || b.n - a.n || b.m - a.m)[0];
}

/** Why a variant is out of reach on an adapter, or undefined when it is not. */
function missing(req: VariantRequirement, caps: GpuCapabilities): string | undefined {
  const absent = req.features.filter((f) => !caps.features.has(f));
  if (absent.length > 0) return `no ${absent.join(", ")}`;
  if (req.matrix && caps.matrixShapes.length === 0) return "no f16 -> f32 subgroup-matrix shape";
  if (req.matrix && caps.subgroupMinSize !== caps.subgroupMaxSize)
    return `subgroup size varies (${caps.subgroupMinSize}..${caps.subgroupMaxSize})`;
  return undefined;
}

/**
 * The kernel variant for a storage type and path request on an adapter. `auto` takes the
 * tensor-core path where the adapter has one and falls back to the portable path; asking for a
 * path or storage type the adapter lacks is an error that says what is missing.
 */
export function chooseKernelVariant(
  caps: GpuCapabilities,
  storage: StorageType,
  request: PathRequest = "auto",
): KernelVariant {
  const candidates = KERNEL_VARIANTS.filter(
    (v) => v.storage === storage && (request === "auto" || v.path === request),
  );
  const reasons: string[] = [];
  for (const req of candidates) {
    const reason = missing(req, caps);
    if (reason) {
      reasons.push(`${req.path}: ${reason}`);
      continue;
    }
    if (req.path === "portable") return { path: req.path, storage };
    return {
      path: req.path,
      storage,
      matrix: preferredMatrixShape(caps.matrixShapes),
      subgroupSize: caps.subgroupMinSize,
    };
  }
  if (candidates.length === 0)
    throw new Error(`no ${request} kernels store ${storage}; the tensor-core path needs f16`);
  if (storage === "f16" && !caps.features.has("shader-f16"))
    throw new Error(
      `fp16 asked for, but this adapter (${caps.description}) has no shader-f16: use f32, or on NVIDIA with Dawn enable the vulkan_enable_f16_on_nvidia toggle`,
    );
  throw new Error(
    `the ${request} ${storage} kernels cannot run on this adapter (${caps.description}): ${reasons.join("; ")}`,
  );
}
