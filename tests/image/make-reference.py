# Reference values for tests/image, computed with Pillow and scikit-image.
# Run: python3 tests/image/make-reference.py > tests/image/reference.json
# then format it with: npx biome format --write tests/image/reference.json
import base64
import io
import json

import numpy as np
from PIL import Image, PngImagePlugin
from skimage.metrics import structural_similarity


def pattern(width, height, seed):
    # Same formula as pattern() in tests/image/helpers.ts.
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    channels = []
    for c in range(3):
        v = 0.5 + 0.4 * np.sin(0.3 * x + 0.2 * y + c + seed) * np.cos(0.17 * y - 0.1 * x * (c + 1))
        channels.append(v)
    return np.stack(channels, axis=-1).astype(np.float32)


def to_u8(image):
    return np.round(image * 255).astype(np.uint8)


out = {}

src = to_u8(pattern(13, 9, 0))
resize = {}
for name, flt in [("lanczos", Image.LANCZOS), ("bicubic", Image.BICUBIC), ("bilinear", Image.BILINEAR)]:
    for w, h in [(7, 5), (20, 15), (13, 4), (5, 9), (30, 9)]:
        r = Image.fromarray(src).resize((w, h), resample=flt)
        resize[f"{name}.{w}x{h}"] = np.asarray(r).reshape(-1).tolist()
    r = Image.fromarray(src).resize((6, 6), resample=flt, box=(2.5, 0.5, 10.5, 8.5))
    resize[f"{name}.box"] = np.asarray(r).reshape(-1).tolist()
out["resize"] = resize

ssim = {}
a = pattern(24, 20, 0)
b = pattern(24, 20, 1)
c = np.clip(a + 0.3, 0, 1)
for name, other in [("pattern", b), ("offset", np.float32(a + 0.1)), ("clipped", c)]:
    # float64 inputs: scikit-image computes in the input's precision.
    ssim[name] = float(structural_similarity(
        a.astype(np.float64), other.astype(np.float32).astype(np.float64), gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        data_range=1.0, channel_axis=2,
    ))
out["ssim"] = ssim

# A PNG written by Pillow the way the web UI writes it: add_text picks tEXt for Latin-1 text
# and iTXt otherwise.
info = PngImagePlugin.PngInfo()
info.add_text("parameters", "a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 3x2")
info.add_text("prompt-ja", "猫の写真")
buffer = io.BytesIO()
Image.fromarray(src[:2, :3]).save(buffer, format="PNG", pnginfo=info)
out["pillowPng"] = base64.b64encode(buffer.getvalue()).decode()
out["pillowPngPixels"] = src[:2, :3].reshape(-1).tolist()

print(json.dumps(out))
