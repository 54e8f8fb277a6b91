"""Writes torch-vectors.json: reference outputs of torch (float32, CPU) for the token-reduction
tests, on grids that the factor or the ToMe stride does not divide. Run with torch installed:
    python3 make-torch-vectors.py > torch-vectors.json
Tensors are little-endian float32, base64, channel-last (batch, height, width, channels).
"""
import base64
import json
import math

import torch
import torch.nn.functional as F


def encode(t):
    return base64.b64encode(t.detach().contiguous().to(torch.float32).numpy().tobytes()).decode()


def channel_last(t):
    return t.permute(0, 2, 3, 1)


def resample_cases():
    cases = []
    # Every grid here keeps kernel = h // (h // f) equal to f, so the pools match the reference.
    for h, w, f in [(20, 12, 3), (7, 5, 2), (9, 6, 4), (13, 11, 3), (11, 7, 2), (5, 9, 2), (16, 8, 4)]:
        x = torch.randn(1, 2, h, w)
        oh, ow = h // f, w // f
        modes = {}
        for mode in ["nearest", "nearest-exact", "bilinear", "bicubic", "area", "avg", "max"]:
            if mode == "avg":
                down = F.avg_pool2d(x, kernel_size=f, stride=f)
                up = F.interpolate(down, size=(h, w), mode="nearest")
            elif mode == "max":
                down = F.max_pool2d(x, kernel_size=f, stride=f)
                up = F.interpolate(down, size=(h, w), mode="nearest")
            else:
                down = F.interpolate(x, size=(oh, ow), mode=mode)
                up = F.interpolate(down, size=(h, w), mode=mode)
            assert down.shape[-2:] == (oh, ow)
            modes[mode] = {"down": encode(channel_last(down)), "up": encode(channel_last(up))}
        cases.append({"height": h, "width": w, "factor": f, "input": encode(channel_last(x)), "modes": modes})
    return cases


def bipartite_matching(metric, h, w, sx, sy, r):
    """ToMe for SD's deterministic matching (destination = top-left token of each sy x sx cell)."""
    batch, tokens, _ = metric.shape
    cells_y, cells_x = h // sy, w // sx
    marks = torch.zeros(h, w, dtype=torch.int64)
    marks[: cells_y * sy : sy, : cells_x * sx : sx] = -1
    order = marks.reshape(1, -1, 1).argsort(dim=1)
    num_dst = cells_y * cells_x
    src_pos, dst_pos = order[:, num_dst:, :], order[:, :num_dst, :]

    def split(x):
        c = x.shape[-1]
        return (
            torch.gather(x, 1, src_pos.expand(batch, tokens - num_dst, c)),
            torch.gather(x, 1, dst_pos.expand(batch, num_dst, c)),
        )

    normed = metric / metric.norm(dim=-1, keepdim=True)
    a, b = split(normed)
    scores = a @ b.transpose(-1, -2)
    r = min(a.shape[1], r)
    best, best_dst = scores.max(dim=-1)
    ranked = best.argsort(dim=-1, descending=True)[..., None]
    kept, merged = ranked[..., r:, :], ranked[..., :r, :]
    target = torch.gather(best_dst[..., None], -2, merged)

    def merge(x):
        src, dst = split(x)
        n, ns, c = src.shape
        unm = torch.gather(src, -2, kept.expand(n, ns - r, c))
        moved = torch.gather(src, -2, merged.expand(n, r, c))
        dst = dst.scatter_reduce(-2, target.expand(n, r, c), moved, reduce="mean")
        return torch.cat([unm, dst], dim=1)

    def unmerge(y):
        n_kept = kept.shape[1]
        unm, dst = y[..., :n_kept, :], y[..., n_kept:, :]
        c = y.shape[-1]
        moved = torch.gather(dst, -2, target.expand(batch, r, c))
        out = torch.zeros(batch, tokens, c)
        out.scatter_(-2, dst_pos.expand(batch, num_dst, c), dst)
        out.scatter_(-2, torch.gather(src_pos.expand(batch, src_pos.shape[1], 1), 1, kept).expand(batch, n_kept, c), unm)
        out.scatter_(-2, torch.gather(src_pos.expand(batch, src_pos.shape[1], 1), 1, merged).expand(batch, r, c), moved)
        return out

    return merge, unmerge


def tome_cases():
    cases = []
    for h, w, sx, sy, ratio in [(8, 8, 2, 2, 0.5), (7, 5, 2, 2, 0.5), (6, 9, 3, 2, 0.6), (5, 5, 2, 2, 0.75),
                                (4, 6, 2, 3, 0.3), (6, 4, 2, 2, 0.9), (3, 3, 2, 2, 0.2), (5, 7, 1, 2, 0.7)]:
        x = torch.randn(2, h * w, 4)
        r = int(x.shape[1] * ratio)
        merge, unmerge = bipartite_matching(x, h, w, sx, sy, r)
        merged = merge(x)
        roundtrip = unmerge(merged * 2.0 + 1.0)
        # A plain attention with the merged tokens as keys and values (order-free).
        scores = (x @ merged.transpose(-1, -2)) / math.sqrt(x.shape[-1])
        attended = scores.softmax(dim=-1) @ merged
        cases.append({
            "height": h, "width": w, "strideX": sx, "strideY": sy, "ratio": ratio,
            "merged": int(merged.shape[1]),
            "input": encode(x.reshape(2, h, w, 4)),
            "roundtrip": encode(roundtrip.reshape(2, h, w, 4)),
            "attended": encode(attended.reshape(2, h, w, 4)),
        })
    return cases


torch.manual_seed(1234)
print(json.dumps({"torch": torch.__version__, "resample": resample_cases(), "tome": tome_cases()}))
