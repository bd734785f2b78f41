"""Micro-benchmarks behind the design choices in docs/performance.md (run: .venv/bin/python studies/microbench.py).

Each line times one alternative for one SEUNet layer shape (input 1 x 4 x 64^3, the paper's configuration), median
of interleaved repeats in one process, 2 threads. Forward ("fwd") without autograd; "f+b" is forward and backward
of a sum over the output.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F

from se_monai.ops import channels_last, space_to_depth

CL = torch.channels_last_3d
REPEATS = 9


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def compare(title: str, variants: dict, backward: bool = True) -> None:
    """Interleave the variants; print the median forward (and forward + backward) time of each in ms."""
    times = {name: {"fwd": [], "f+b": []} for name in variants}
    for _ in range(REPEATS):
        for name, fn in variants.items():
            with torch.no_grad():
                times[name]["fwd"].append(timed(fn))
            if backward:
                times[name]["f+b"].append(timed(lambda fn=fn: fn().sum().backward()))
    print(title)
    for name, t in times.items():
        line = f"  {name:<52} fwd {statistics.median(t['fwd'][2:]):6.1f} ms"
        if backward:
            line += f"   f+b {statistics.median(t['f+b'][2:]):6.1f} ms"
        print(line)


def grouped_small_channels() -> None:
    """The top group convolution of SEUNet: 4 scales x 3 channels at 64^3, kernel 5."""
    x = torch.randn(1, 12, 64, 64, 64).contiguous(memory_format=CL).requires_grad_()
    kernel = torch.randn(12, 3, 5, 5, 5)
    direct = kernel.contiguous(memory_format=CL).requires_grad_()
    blocked = space_to_depth.blocked_kernel(kernel, 4).contiguous(memory_format=CL).requires_grad_()
    permuted = {}

    def nine_d_permute(x):  # the space-to-depth rearrangement as one 9-D permute-copy
        b, c, d, h, w = x.shape
        y = x.reshape(b, c, d // 2, 2, h // 2, 2, w // 2, 2).permute(0, 2, 4, 6, 1, 3, 5, 7).contiguous()
        return y.reshape(b, d // 2, h // 2, w // 2, c * 8).permute(0, 4, 1, 2, 3)

    permuted["to_blocks (depthwise one-hot convolution)"] = lambda: space_to_depth.to_blocks(x)
    permuted["to_blocks as a 9-D permute-copy"] = lambda: nine_d_permute(x)
    dense = torch.block_diag(*[torch.ones(3, 3)] * 4)[:, :, None, None, None] * kernel.repeat(1, 4, 1, 1, 1)
    dense = dense.contiguous(memory_format=CL).requires_grad_()
    folded = x.detach().reshape(4, 3, 64, 64, 64).contiguous(memory_format=CL).requires_grad_()
    compare(
        "group convolution 3 -> 3 channels x 4 scales, 64^3, kernel 5",
        {
            "direct grouped conv3d, channels-last": lambda: F.conv3d(x, direct, None, 1, 2, 1, 4),
            "space-to-depth form (24 -> 24 x 4, 32^3, kernel 3)": lambda: space_to_depth.blocked_conv3d(
                x, blocked, None, 4
            ),
            "dense block-diagonal 12 -> 12": lambda: F.conv3d(x, dense, None, 1, 2),
            "scales in the batch, all 4 kernels each": lambda: F.conv3d(folded, direct, None, 1, 2),
        },
    )
    compare("space-to-depth rearrangement of that input", permuted)
    x8 = torch.randn(1, 32, 16, 16, 16).contiguous(memory_format=CL).requires_grad_()
    kernel8 = torch.randn(32, 8, 5, 5, 5)
    direct8 = kernel8.contiguous(memory_format=CL).requires_grad_()
    blocked8 = space_to_depth.blocked_kernel(kernel8, 4).contiguous(memory_format=CL).requires_grad_()
    compare(
        "group convolution 8 -> 8 channels x 4 scales, 16^3, kernel 5 (above the blocking threshold)",
        {
            "direct grouped conv3d, channels-last": lambda: F.conv3d(x8, direct8, None, 1, 2, 1, 4),
            "space-to-depth form": lambda: space_to_depth.blocked_conv3d(x8, blocked8, None, 4),
        },
    )


def transposed_bias() -> None:
    """The top transposed convolution: 4 scales x 8 -> 3 channels, 32^3 -> 64^3, kernel 5, stride 2."""
    x = torch.randn(1, 32, 32, 32, 32).contiguous(memory_format=CL)
    kernel = torch.randn(32, 3, 5, 5, 5).contiguous(memory_format=CL)
    bias = torch.randn(12)
    compare(
        "transposed group convolution 8 -> 3 x 4 scales, 32^3 -> 64^3",
        {
            "bias fused into conv_transpose3d": lambda: F.conv_transpose3d(x, kernel, bias, 2, 2, 1, 4),
            "bias added after conv_transpose3d": lambda: (
                F.conv_transpose3d(x, kernel, None, 2, 2, 1, 4) + bias.view(1, -1, 1, 1, 1)
            ),
        },
        backward=False,
    )


def subpixel_kernel(kernel: torch.Tensor, groups: int) -> torch.Tensor:
    """Sub-pixel form (Shi et al., CVPR 2016) of ``conv_transpose3d(., kernel, stride 2, padding 2, output padding
    1, groups)`` for a 5^3 kernel: output voxel 2m + r reads input m + v through tap t = 2((r + 2) // 2 - v) + r % 2,
    so a 3^3 convolution with 8x the output channels at the input's resolution, then depth-to-space, equals it."""
    table = torch.zeros(2, 3, 5)  # (sub-voxel r, offset v + 1, tap t)
    for r in range(2):
        for t in range(r % 2, 5, 2):
            table[r, (r + 2) // 2 - (t - r % 2) // 2 + 1, t] = 1.0
    c_in, c_out = kernel.shape[:2]
    per_group = kernel.reshape(groups, c_in // groups, c_out, 5, 5, 5)
    phases = torch.einsum("giotuv,pxt,qyu,rzv->gopqrixyz", per_group, table, table, table)
    return phases.reshape(groups * c_out * 8, c_in // groups, 3, 3, 3).contiguous(memory_format=CL)


def subpixel_transposed() -> None:
    """The bundle's SEUNet up-sampling (transposed SE group convolutions, 4 scales, kernel 5) in a 96^3 window."""
    for c_in, c_out, size in ((48, 8, 12), (16, 4, 24), (8, 3, 48)):
        x = torch.randn(1, 4 * c_in, size, size, size).contiguous(memory_format=CL).requires_grad_()
        kernel = torch.randn(4 * c_in, c_out, 5, 5, 5)
        direct = kernel.contiguous(memory_format=CL).requires_grad_()
        phases = subpixel_kernel(kernel, 4).requires_grad_()

        def sub_pixel(x=x, phases=phases):
            return space_to_depth.from_blocks(F.conv3d(x, phases, None, 1, 1, 1, 4))

        expected = F.conv_transpose3d(x, direct, None, 2, 2, 1, 4)
        torch.testing.assert_close(sub_pixel(), expected, rtol=1e-4, atol=1e-4)  # the same convolution
        compare(
            f"transposed group convolution {c_in} -> {c_out} x 4 scales, {size}^3 -> {2 * size}^3",
            {
                "conv_transpose3d, channels-last": lambda x=x, direct=direct: F.conv_transpose3d(
                    x, direct, None, 2, 2, 1, 4
                ),
                "sub-pixel form (3^3, 8x channels, depth-to-space)": sub_pixel,
                "  its convolution alone": lambda x=x, phases=phases: F.conv3d(x, phases, None, 1, 1, 1, 4),
            },
        )


def separable_basis() -> None:
    """Evaluating a tensor-product basis separably, for the top group convolution of the bundle's
    SEUNet (4 -> 4 channels x 4 scales, kernel 5, 3 x 3 x 3 basis orders per scale, 64^3): per scale and input
    channel, 3 one-dimensional filters along the first axis, 3 along the second on each result, 3 along the third
    (3 + 9 + 27 depthwise passes of 5 taps), then a 1x1 combination of the 27 responses with the weights; 1212
    multiply-adds per voxel and scale against 2000 for the expanded 5^3 kernel."""
    scales, channels, orders, size = 4, 4, 3, 64
    x = torch.randn(1, scales * channels, size, size, size).contiguous(memory_format=CL).requires_grad_()
    factors = [torch.randn(scales, orders, 5) for _ in range(3)]  # 1-D factors per scale, order and tap
    weights = torch.randn(scales, channels, channels, orders, orders, orders)  # (scale, out, in, n, m, k)
    kernel = torch.einsum("soinmk,snx,smy,skz->soixyz", weights, *factors)
    kernel = kernel.reshape(scales * channels, channels, 5, 5, 5).contiguous(memory_format=CL).requires_grad_()
    passes = []
    for axis, factor in enumerate(factors):  # depthwise 1-D filters, every input map gets the 3 orders
        groups = scales * channels * orders**axis
        shape = [1, 1, 1]
        shape[axis] = 5
        weight = factor.repeat_interleave(channels * orders**axis, dim=0).reshape(groups * orders, 1, *shape)
        padding = [0, 0, 0]
        padding[axis] = 2
        passes.append((weight.contiguous(memory_format=CL).requires_grad_(), groups, tuple(padding)))
    combine = weights.reshape(scales, channels, channels, orders**3).reshape(scales * channels, channels * orders**3)
    combine = combine[:, :, None, None, None].contiguous(memory_format=CL).requires_grad_()

    def separable():
        y = x
        for weight, groups, padding in passes:
            y = F.conv3d(y, weight, None, 1, padding, 1, groups)
        return F.conv3d(y, combine, None, 1, 0, 1, scales)

    torch.testing.assert_close(separable(), F.conv3d(x, kernel, None, 1, 2, 1, scales), rtol=1e-3, atol=1e-2)
    compare(
        "group convolution 4 -> 4 channels x 4 scales, 64^3, kernel 5, tensor-product basis",
        {
            "expanded kernel, direct grouped conv3d": lambda: F.conv3d(x, kernel, None, 1, 2, 1, scales),
            "expanded kernel, space-to-depth form": lambda: space_to_depth.blocked_conv3d(
                x, space_to_depth.blocked_kernel(kernel.detach(), scales).contiguous(memory_format=CL), None, scales
            ),
            "separable: 39 depthwise 1-D passes + 1x1": separable,
        },
    )


def batch_norm_chain() -> None:
    """Batch norm + SiLU on the (B, D, H, W, S, C) layout of the top of SEUNet, consumed channels-last."""
    base = torch.randn(1, 64, 64, 64, 4, 3)
    weight, bias = torch.randn(3, requires_grad=True), torch.randn(3, requires_grad=True)

    def chain(norm):
        def run():
            x = base.clone().requires_grad_().permute(0, 5, 4, 1, 2, 3)
            y = F.silu(norm(x))
            return y.permute(0, 3, 4, 5, 2, 1).reshape(1, 64, 64, 64, 12)  # what the next SE convolution reads

        return run

    def torch_norm(x):
        return F.batch_norm(x, torch.zeros(3), torch.ones(3), weight, bias, True, 0.1, 1e-5)

    def layout_norm(x):
        y, _, _ = channels_last.batch_norm(channels_last.channel_matrix(x), weight, bias, 1e-5)
        return y.view(1, 64, 64, 64, 4, 3).permute(0, 5, 4, 1, 2, 3)

    compare(
        "batch norm (batch statistics) + SiLU, 3 channels x 4 scales at 64^3",
        {
            "torch.nn.functional.batch_norm": chain(torch_norm),
            "se_monai.ops.channels_last.batch_norm": chain(layout_norm),
        },
    )


if __name__ == "__main__":
    torch.set_num_threads(2)
    torch.manual_seed(0)
    grouped_small_channels()
    transposed_bias()
    subpixel_transposed()
    separable_basis()
    batch_norm_chain()
