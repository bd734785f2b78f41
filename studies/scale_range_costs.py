"""Compute and memory of the ways to widen SE-U-Net's scale range (docs/results.md, "A wider scale
range"): the networks of configs/scale_generalisation_n2.json (optimised basis over 4 scales 0.9^i, 4 scales 0.79^i,
8 scales 0.9^i) and MONAI's UNet baselines, timed in one process, interleaved, on the experiment's training step
(batch of 2 patches of 48^3, forward + backward + SGD step), with the activation memory autograd keeps for it, and on
one 96^3 sliding window of the bundle (eval, no gradient); and the pyramid of rescaled inputs, whose cost is the sum
of its levels' voxels (zoom z: z^3 times the voxels).

Run (about 1 minute on 2 CPU cores; bases not shipped are fitted and cached first):

    .venv/bin/python studies/scale_range_costs.py
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import fire
import torch
from monai.bundle import ConfigParser

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "scale_generalisation_n2.json"


def _networks(config: dict) -> dict[str, torch.nn.Module]:
    nets = {}
    for name, arm in config["networks"].items():
        parser = ConfigParser({"num_classes": config["num_classes"], "net": arm["network_def"]})
        nets[name] = parser.get_parsed_content("net")
    return nets


def _saved_mib(net: torch.nn.Module, patch: torch.Tensor) -> float:
    """MiB of the tensors autograd saves for the backward pass of one training forward: the activation memory."""
    total = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    net.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        net(patch)
    return total / 2**20


def _seconds(step, repeats: int) -> float:
    step()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - start) / repeats


def main(threads: int = 2, repeats: int = 3, zooms: tuple = (0.7, 1.0, 1.4, 2.0)) -> None:
    """Print a markdown table: parameters, training step and 96^3 window times, and their ratio to the 4-scale net."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = json.loads(CONFIG.read_text())
    nets = _networks(config)
    patch = torch.randn(2, 1, 48, 48, 48)
    target = torch.randint(0, config["num_classes"], (2, 48, 48, 48))
    window = torch.randn(1, 1, 96, 96, 96)
    times: dict[str, list[float]] = {name: [0.0, 0.0] for name in nets}
    for _ in range(2):  # two interleaved rounds, summed
        for name, net in nets.items():
            optimiser = torch.optim.SGD(net.parameters(), lr=1e-3)

            def train_step(net=net, optimiser=optimiser):
                net.train()
                optimiser.zero_grad()
                torch.nn.functional.cross_entropy(net(patch), target).backward()
                optimiser.step()

            def infer(net=net):
                net.eval()
                with torch.no_grad():
                    net(window)

            times[name][0] += _seconds(train_step, repeats) / 2
            times[name][1] += _seconds(infer, repeats) / 2
    first = times["seunet_disco"]
    print(f"torch {torch.__version__}, {threads} threads")
    print(
        "| network | parameters | training step (s) | vs 4 scales 0.9 | saved for backward (MiB) | 96^3 window (s) "
        "| vs 4 scales 0.9 |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, (train, infer) in times.items():
        params = sum(p.numel() for p in nets[name].parameters())
        print(
            f"| {name} | {params} | {train:.3f} | {train / first[0]:.2f} | {_saved_mib(nets[name], patch):.0f} "
            f"| {infer:.3f} | {infer / first[1]:.2f} |"
        )
    levels = [float(z) for z in zooms]
    print(f"\npyramid levels {levels}: inference cost {sum(z**3 for z in levels):.2f} times one level at zoom 1")


if __name__ == "__main__":
    fire.Fire(main)
