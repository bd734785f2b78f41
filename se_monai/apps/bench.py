"""Side-by-side benchmark: SEUNet, the paper's formulation of its layers (:mod:`se_monai.apps.paper_formulation`),
its reference formulation, and MONAI's UNet baseline of the paper.

Times are taken in one process, interleaved (every repeat runs every model once), as the median of the repeats
after warm-up, so ratios compare like with like. Memory: peak resident set size of the process on CPU (the
kernel's high-water mark, reset before each measurement), peak allocated memory on CUDA. Compute: multiply-adds of
the convolutions per input voxel, counted analytically from each layer's shapes
(:func:`se_monai.apps.compute.multiply_adds`), the GFLOP/s each model achieves (2 FLOP per multiply-add), and beside
them a dense ``conv3d`` of similar size (:func:`dense_conv_rate`): how close to this machine's convolution
throughput each model runs. ``basis_type`` picks SEUNet's basis (the paper's "multi" by default).
"""

from __future__ import annotations

import copy
import json
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.inferers import SlidingWindowInferer

from se_monai.apps import compute
from se_monai.apps.compute import multiply_adds
from se_monai.apps.measure import peak_mb, reset_peak, status_mb, sync, timed
from se_monai.apps.paper_formulation import paper_model
from se_monai.data import icbm152_paths, load_icbm152
from se_monai.inferers import AutocastInferer, AutocastNetwork, cpu_bf16_preferred
from se_monai.networks import SEUNet, paper_baseline_unet
from se_monai.networks.blocks import SEConvolution, SEOutputBlock, SEResidualUnit
from se_monai.reference import reference_model
from se_monai.workflows import bundle_preprocess

__all__ = [
    "dense_conv_rate",
    "benchmark_models",
    "layer_breakdown",
    "convolution_share",
    "benchmark_volume",
    "run",
    "format_table",
]


def _models(
    in_channels: int, out_channels: int, amp: bool = False, device: str = "cpu", basis_type: str = "multi"
) -> dict[str, nn.Module]:
    se = SEUNet(in_channels=in_channels, out_channels=out_channels, basis_type=basis_type)
    models = {
        "SEUNet": se,
        "SEUNet paper formulation": paper_model(se),
        "SEUNet reference": reference_model(se),
        "UNet baseline": paper_baseline_unet(3, in_channels, out_channels),
    }
    if amp:
        device_type = torch.device(device).type
        for base in ("SEUNet", "UNet baseline"):
            name = f"{base} autocast {'fp16' if device_type == 'cuda' else 'bf16'}"
            models[name] = AutocastNetwork(copy.deepcopy(models[base]), device_type)
    return models


def dense_conv_rate(
    channels: int = 32, size: int = 32, kernel_size: int = 3, repeats: int = 5, device: str = "cpu"
) -> dict[str, float]:
    """This machine's throughput for a plain dense ``conv3d`` (``channels`` -> ``channels``, ``kernel_size``^3,
    a ``size``^3 input, forward without gradient): ``{"seconds", "gflops"}``, median of ``repeats``."""
    dev = torch.device(device)
    conv = nn.Conv3d(channels, channels, kernel_size, padding=kernel_size // 2).to(dev).eval()
    x = torch.randn(1, channels, size, size, size, device=dev)
    with torch.no_grad():
        conv(x)
        seconds = statistics.median(timed(lambda: conv(x), dev) for _ in range(repeats))
    flops = 2.0 * channels * channels * kernel_size**3 * size**3
    return {"seconds": seconds, "gflops": flops / seconds / 1e9}


def _in_fresh_process(task: str, **kwargs: Any) -> dict[str, Any]:
    """Run ``task`` of this module in a new Python process (a clean peak-RSS count) and return its result."""
    command = [sys.executable, "-m", "se_monai.apps.bench", task, json.dumps(kwargs)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _train_step_memory(
    model: str, size: int, in_channels: int, out_channels: int, device: str, basis_type: str = "multi"
) -> dict[str, Any]:
    """Memory of one training step: peak minus resident before the step (MiB), in this process."""
    dev = torch.device(device)
    net = _models(in_channels, out_channels, amp=True, device=device, basis_type=basis_type)[model].to(dev).train()
    x = torch.randn(1, in_channels, size, size, size, device=dev)
    y = torch.randint(0, out_channels, (1, size, size, size), device=dev)
    before = torch.cuda.memory_allocated(dev) / 2**20 if dev.type == "cuda" else status_mb("VmRSS")
    reset_peak(dev)
    F.cross_entropy(net(x), y).backward()
    peak = peak_mb(dev)
    return {"peak_mb": None if peak is None or before is None else peak - before}


def _step_memory(dev: torch.device, spec: dict[str, Any]) -> dict[str, Any]:
    """One training step's memory: in this process on CUDA, in a fresh process on CPU (a clean peak RSS)."""
    return _train_step_memory(**spec) if dev.type == "cuda" else _in_fresh_process("memory", **spec)


def benchmark_models(
    size: int = 64,
    in_channels: int = 4,
    out_channels: int = 3,
    batch: int = 1,
    repeats: int = 5,
    warmup: int = 2,
    device: str = "cpu",
    amp: bool = False,
    memory: bool = True,
    basis_type: str = "multi",
) -> dict[str, dict[str, float]]:
    """Forward (eval, no grad), training step (forward, cross-entropy, backward, Adam step) and peak memory.

    Args:
        size: edge of the cubic input (voxels; divisible by 8).
        in_channels, out_channels, batch: input ``(batch, in_channels, size, size, size)``.
        repeats, warmup: timed and untimed repeats; times are medians over ``repeats``.
        device: torch device.
        amp: also time SEUNet under ``torch.autocast`` (bfloat16 on CPU, float16 on CUDA).
        memory: measure ``peak_mb`` (on CPU one fresh process per model, seconds each); else it is None.
        basis_type: SEUNet's basis ("multi", the paper's configuration; "disco", the shipped model's; "single").

    Returns:
        ``{model name: {"params", "macs_per_voxel", "forward_gflops", "forward_s", "train_step_s", "peak_mb"}}``:
        multiply-adds per input voxel (:func:`se_monai.apps.compute.multiply_adds`), the forward pass's achieved
        GFLOP/s, and ``peak_mb``,
        the memory one training step adds at its peak (CPU: resident set, measured in a fresh process; CUDA:
        allocated memory).
    """
    dev = torch.device(device)
    models = _models(in_channels, out_channels, amp=amp, device=device, basis_type=basis_type)
    x = torch.randn(batch, in_channels, size, size, size, device=dev)
    y = torch.randint(0, out_channels, (batch, size, size, size), device=dev)
    steps = {}
    for name, model in models.items():
        model.to(dev)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

        def forward(model: nn.Module = model) -> None:
            model.eval()
            with torch.no_grad():
                model(x)

        def train_step(model: nn.Module = model, optimizer: torch.optim.Optimizer = optimizer) -> None:
            model.train()
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            optimizer.step()

        steps[name] = (forward, train_step)
    times: dict[str, dict[str, list[float]]] = {name: defaultdict(list) for name in models}
    for r in range(warmup + repeats):
        for name, (forward, train_step) in steps.items():
            t_forward, t_step = timed(forward, dev), timed(train_step, dev)
            if r >= warmup:
                times[name]["forward_s"].append(t_forward)
                times[name]["train_step_s"].append(t_step)
    results = {}
    for name, model in models.items():
        spec = {
            "model": name,
            "basis_type": basis_type,
            "size": size,
            "in_channels": in_channels,
            "out_channels": out_channels,
            "device": device,
        }
        forward_s = statistics.median(times[name]["forward_s"])
        macs = multiply_adds(model, x)
        results[name] = {
            "params": float(sum(p.numel() for p in model.parameters())),
            "macs_per_voxel": macs,
            "forward_gflops": 2.0 * macs * batch * size**3 / forward_s / 1e9,
            "forward_s": forward_s,
            "train_step_s": statistics.median(times[name]["train_step_s"]),
            "peak_mb": _step_memory(dev, spec)["peak_mb"] if memory else None,
        }
    return results


def layer_breakdown(
    size: int = 64,
    in_channels: int = 4,
    out_channels: int = 3,
    repeats: int = 3,
    device: str = "cpu",
    basis_type: str = "multi",
) -> dict[str, float]:
    """Forward time of SEUNet (eval, no autograd) summed per kind of unit that runs (seconds, median of
    ``repeats``): leaf layers, except that an :class:`~se_monai.networks.blocks.SEConvolution` counts as one unit
    ("SESConv_H_H + norm + act": inference folds its batch norm into the convolution) and the
    :class:`~se_monai.networks.blocks.SEOutputBlock` as one (its layers run in blocked layout together), and so does
    a :class:`~se_monai.networks.blocks.SEResidualUnit` whose first subunit and residual run as one convolution on
    CPU ("SEResidualUnit (fused)"; its time includes its other subunits)."""
    dev = torch.device(device)
    net = SEUNet(in_channels=in_channels, out_channels=out_channels, basis_type=basis_type).to(dev).eval()
    x = torch.randn(1, in_channels, size, size, size, device=dev)
    totals: dict[str, list[float]] = defaultdict(list)
    current: dict[str, float] = defaultdict(float)
    starts: dict[int, float] = {}

    def kind(module: nn.Module) -> str:
        if isinstance(module, SEResidualUnit):
            return "SEResidualUnit (fused)"
        if isinstance(module, SEConvolution):
            extra = [name for name in ("norm", "act") if name in module._modules]
            return " + ".join([kind(module.conv), *extra])
        name = type(module).__name__
        return name + " (transposed)" if getattr(module, "transposed", False) else name

    def before(module: nn.Module, _inputs: Any) -> None:
        sync(dev)
        starts[id(module)] = time.perf_counter()

    def after(module: nn.Module, _inputs: Any, _output: Any) -> None:
        sync(dev)
        current[kind(module)] += time.perf_counter() - starts.pop(id(module))

    units: list[nn.Module] = []

    def collect(module: nn.Module) -> None:
        children = list(module.children())
        fused = dev.type == "cpu" and isinstance(module, SEResidualUnit) and module._fusable()
        if not children or fused or isinstance(module, (SEConvolution, SEOutputBlock)):
            units.append(module)
        else:
            for child in children:
                collect(child)

    with torch.no_grad():  # as the forward passes below, where the residual units fuse
        collect(net)
    handles = [m.register_forward_pre_hook(before) for m in units] + [m.register_forward_hook(after) for m in units]
    with torch.no_grad():
        net(x)
        for _ in range(repeats):
            current.clear()
            total = timed(lambda: net(x), dev)
            for key, value in current.items():
                totals[key].append(value)
            totals["whole network"].append(total)
    for handle in handles:
        handle.remove()
    return {key: statistics.median(values) for key, values in sorted(totals.items(), key=lambda kv: -max(kv[1]))}


def convolution_share(
    size: int = 64,
    in_channels: int = 4,
    out_channels: int = 3,
    repeats: int = 5,
    device: str = "cpu",
    basis_type: str = "multi",
) -> dict[str, dict[str, float]]:
    """:func:`se_monai.apps.compute.convolution_share` of SEUNet and the UNet baseline on one
    ``(1, in_channels, size, size, size)`` input: ``{"SEUNet": {"forward_s", "convolutions_s"}, "UNet baseline":
    {...}}`` in seconds."""
    dev = torch.device(device)
    models = _models(in_channels, out_channels, device=device, basis_type=basis_type)
    x = torch.randn(1, in_channels, size, size, size, device=dev)
    return compute.convolution_share({name: models[name].to(dev) for name in ("SEUNet", "UNet baseline")}, x, repeats)


def benchmark_volume(
    roi_size: int = 96,
    overlap: float = 0.25,
    sw_batch_size: int = 1,
    device: str = "cpu",
    image: torch.Tensor | None = None,
    basis_type: str = "multi",
    crop: bool = True,
    autocast: bool | None = None,
) -> dict[str, Any]:
    """Whole-volume sliding-window inference with the bundle's SEUNet (1 -> 3 channels).

    Args:
        roi_size, overlap, sw_batch_size: of ``monai.inferers.SlidingWindowInferer``.
        device: torch device.
        image: ``(D, H, W)`` volume; default the ICBM152 T1 at 1 mm (197 x 233 x 189 voxels) as the shipped bundle's
            inference hands it to its inferer at the training spacing (:func:`se_monai.workflows.bundle_preprocess`
            with magnification 1: cropped to its non-zero voxels with a 4-voxel margin, 153 x 189 x 159, z-scored;
            the shipped magnification, 1.6, gives 4.1 times the voxels); with ``crop=False`` the whole 197 x 233 x 189
            box, z-scored over its non-zero voxels (what this measured before 2026-12-03).
        autocast: bfloat16 (CPU) or float16 (CUDA) autocast; None: as the bundle's inference.json does it
            (float16 on CUDA, bfloat16 on CPUs with AMX, :func:`se_monai.inferers.cpu_bf16_preferred`).

    Returns:
        ``{"shape", "seconds" (wall time), "peak_mb", "precision"}``: peak memory on CPU the peak resident set of
        the whole process (run it in a fresh process for a clean count, as :func:`run` does), on CUDA peak allocated
        memory; precision "float32", "bfloat16" or "float16".
    """
    dev = torch.device(device)
    if image is None and crop:
        image = bundle_preprocess(icbm152_paths()["t1"], magnification=1.0)[0].as_tensor()
    elif image is None:
        t1 = torch.from_numpy(load_icbm152()[0])
        image = (t1 - t1[t1 > 0].mean()) / t1[t1 > 0].std()
    volume = image[None, None].to(dev)
    net = SEUNet(in_channels=1, out_channels=3, basis_type=basis_type).to(dev).eval()
    autocast = dev.type == "cuda" or cpu_bf16_preferred(dev) if autocast is None else autocast
    dtype = torch.float16 if dev.type == "cuda" else torch.bfloat16
    windows = SlidingWindowInferer(roi_size=roi_size, sw_batch_size=sw_batch_size, overlap=overlap)
    inferer = AutocastInferer(windows, enabled=autocast, dtype=dtype)
    reset_peak(dev)
    with torch.no_grad():
        seconds = timed(lambda: inferer(volume, net), dev)
    precision = str(dtype).removeprefix("torch.") if autocast else "float32"
    return {"shape": list(image.shape), "seconds": seconds, "peak_mb": peak_mb(dev), "precision": precision}


def run(
    size: int = 64,
    repeats: int = 5,
    device: str = "cpu",
    threads: int | None = None,
    layers: bool = True,
    volume: bool = True,
    amp: bool = False,
    memory: bool = True,
    basis_type: str = "multi",
) -> dict[str, Any]:
    """Everything ``se-monai bench`` measures, as one dictionary (see :func:`format_table`); ``basis_type`` as in
    :func:`benchmark_models`."""
    if threads:
        torch.set_num_threads(threads)
    report: dict[str, Any] = {
        "config": {
            "size": size,
            "repeats": repeats,
            "device": device,
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "basis_type": basis_type,
        },
        "models": benchmark_models(
            size=size, repeats=repeats, device=device, amp=amp, memory=memory, basis_type=basis_type
        ),
    }
    models = report["models"]
    report["dense_conv3d"] = dense_conv_rate(repeats=repeats, device=device)
    se, ref, paper = models["SEUNet"], models["SEUNet reference"], models["SEUNet paper formulation"]
    report["ratios"] = {
        "train_step paper formulation / SEUNet": paper["train_step_s"] / se["train_step_s"],
        "forward paper formulation / SEUNet": paper["forward_s"] / se["forward_s"],
        "train_step reference / SEUNet": ref["train_step_s"] / se["train_step_s"],
        "forward reference / SEUNet": ref["forward_s"] / se["forward_s"],
        "forward SEUNet / UNet baseline": se["forward_s"] / models["UNet baseline"]["forward_s"],
        "SEUNet train_step / forward": se["train_step_s"] / se["forward_s"],
        "train_step UNet baseline / SEUNet": models["UNet baseline"]["train_step_s"] / se["train_step_s"],
    }
    for name in [n for n in models if n.startswith("SEUNet autocast")]:
        report["ratios"][f"train_step SEUNet / {name}"] = se["train_step_s"] / models[name]["train_step_s"]
        report["ratios"][f"forward SEUNet / {name}"] = se["forward_s"] / models[name]["forward_s"]
        unet = name.replace("SEUNet", "UNet baseline")
        report["ratios"][f"forward {name} / {unet}"] = models[name]["forward_s"] / models[unet]["forward_s"]
    if layers:
        report["layers"] = layer_breakdown(size=size, device=device, basis_type=basis_type)
        report["convolutions"] = convolution_share(size=size, repeats=repeats, device=device, basis_type=basis_type)
    if volume:
        report["volume"] = (
            benchmark_volume(device=device, basis_type=basis_type)
            if torch.device(device).type == "cuda"
            else _in_fresh_process("volume", device=device, threads=torch.get_num_threads(), basis_type=basis_type)
        )
    return report


def format_table(report: dict[str, Any]) -> str:
    """The report as plain-text tables."""
    cfg = report["config"]
    width = max([26] + [len(name) + 2 for name in report["models"]])
    label = max([44] + [len(key) + 2 for key in report["ratios"]])
    lines = [
        f"input 1x4x{cfg['size']}^3, {cfg['device']}, {cfg['threads']} threads, torch {cfg['torch']}, "
        f"basis {cfg.get('basis_type', 'multi')}, "
        f"median of {cfg['repeats']}",
        "",
        f"{'model':<{width}}{'params':>9}{'MAC/voxel':>11}{'forward s':>11}{'GFLOP/s':>9}"
        f"{'train step s':>14}{'step MB':>9}",
    ]
    for name, m in report["models"].items():
        peak = f"{m['peak_mb']:.0f}" if m["peak_mb"] is not None else "n/a"
        lines.append(
            f"{name:<{width}}{m['params']:>9,.0f}{m['macs_per_voxel']:>11,.0f}{m['forward_s']:>11.3f}"
            f"{m['forward_gflops']:>9.1f}{m['train_step_s']:>14.3f}{peak:>9}"
        )
    if "dense_conv3d" in report:
        dense = report["dense_conv3d"]
        lines.append(f"dense conv3d 32->32, 3^3 kernel, 32^3 input: {dense['gflops']:.1f} GFLOP/s (this machine)")
    lines += ["", "ratios"] + [f"  {k:<{label}}{v:>7.2f}" for k, v in report["ratios"].items()]
    if "layers" in report:
        lines += ["", "SEUNet forward by layer kind (s)"]
        lines += [f"  {k:<{label}}{v:>7.3f}" for k, v in report["layers"].items()]
    if "convolutions" in report:
        share = report["convolutions"]
        lines += ["", "forward pass beside its convolution calls alone (weights unchanged between calls, s)"]
        for name, t in share.items():
            lines.append(
                f"  {name:<{width}}forward {t['forward_s']:.3f}  convolutions {t['convolutions_s']:.3f}"
                f" ({100 * t['convolutions_s'] / t['forward_s']:.0f} %)"
            )
        bound = share["SEUNet"]["convolutions_s"] / share["UNet baseline"]["forward_s"]
        lines.append(f"  {'SEUNet convolutions / UNet baseline forward':<{label}}{bound:>7.2f}")
    if "volume" in report:
        v = report["volume"]
        peak = f"{v['peak_mb']:.0f} MB" if v["peak_mb"] is not None else "n/a"
        lines += [
            "",
            f"whole-volume sliding-window inference {'x'.join(map(str, v['shape']))} (ICBM152 T1, 1 mm): "
            f"{v['seconds']:.1f} s, peak RSS {peak}, {v.get('precision', 'float32')}",
        ]
    return "\n".join(lines)


def _main() -> None:
    """``python -m se_monai.apps.bench TASK JSON``: the measurements that need a fresh process; prints JSON."""
    task, kwargs = sys.argv[1], json.loads(sys.argv[2])
    if task == "memory":
        result = _train_step_memory(**kwargs)
    elif task == "volume":
        torch.set_num_threads(kwargs.pop("threads"))
        result = benchmark_volume(**kwargs)
    else:
        raise SystemExit(f"unknown task {task!r}")
    print(json.dumps(result))


if __name__ == "__main__":
    _main()
