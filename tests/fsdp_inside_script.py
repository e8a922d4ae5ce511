"""Run by test_inside_fsdp.py as each of 2 gloo ranks (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT set): models
sharded with FSDP2's ``fully_shard`` (each layer, then the root, as the PyTorch FSDP2 tutorial does), trained a few
steps by a plain loop through ``@tracker.train_step``; each rank writes what it saw to ``<out>/rank<r>.json``.

    python tests/fsdp_inside_script.py OUT_DIR
"""

from __future__ import annotations

import json
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from helpers import FaultyNet  # tests/, this script's directory
from torch.distributed.fsdp import fully_shard

from callbacks import ActivationStats, GradientStats, NonFiniteSentinel
from trackers import Tracker
from trackers.tools.demo import TutorialNet

LAYERS = ("conv1", "conv2", "fc1", "fc2", "fc3")
"""The TutorialNet modules with parameters, each sharded on its own before the root."""

ACTIVATION_STEPS = 4
ACTIVATION_EVERY = 2  # logs at steps 1 and 3


def shard(net: torch.nn.Module, layers: Sequence[str]) -> torch.nn.Module:
    for name in layers:
        fully_shard(net.get_submodule(name))
    fully_shard(net)
    return net


def hook_count(net: torch.nn.Module) -> int:
    """The forward hooks on ``net``'s modules but the root (where the Tracker keeps its own)."""
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for name, m in net.named_modules() if name)


def images(rank: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank ``rank``'s batch of step ``step``: each rank its own data."""
    generator = torch.Generator().manual_seed(1000 * rank + step)
    return torch.randn(4, 1, 28, 28, generator=generator), torch.randint(0, 10, (4,), generator=generator)


def full_copy(net: torch.nn.Module) -> TutorialNet:
    """An unsharded TutorialNet with ``net``'s current weights (gathered: every rank must call it)."""
    plain = TutorialNet()
    plain.load_state_dict({name: value.full_tensor() for name, value in net.state_dict().items()})
    return plain


def dead_units(output: torch.Tensor) -> torch.Tensor:
    """Which units (dim 1) of ``output`` are zero for every sample and position."""
    return (output == 0).transpose(0, 1).flatten(1).all(dim=1)


def reference_activations(net: TutorialNet, x: torch.Tensor) -> dict[str, dict[str, float]]:
    """ActivationStats' statistics of each leaf module's outputs, computed here by hand on an unsharded copy."""
    with torch.no_grad():
        outputs: dict[str, list[torch.Tensor]] = {"conv1": [net.conv1(x)]}
        outputs["pool"] = [net.pool(F.relu(outputs["conv1"][0]))]
        outputs["conv2"] = [net.conv2(outputs["pool"][0])]
        outputs["pool"].append(net.pool(F.relu(outputs["conv2"][0])))  # the same MaxPool, called twice
        outputs["fc1"] = [net.fc1(outputs["pool"][1].flatten(1))]
        outputs["fc2"] = [net.fc2(F.relu(outputs["fc1"][0]))]
        outputs["fc3"] = [net.fc3(F.relu(outputs["fc2"][0]))]
    stats = {}
    for name, tensors in outputs.items():
        values = torch.cat([t.flatten() for t in tensors]).double()
        dead = sum(int(dead_units(t).sum()) for t in tensors)
        stats[name] = {
            "mean": values.mean().item(),
            "std": values.std(correction=0).item(),
            "abs_max": values.abs().max().item(),
            "zero_fraction": (values == 0).double().mean().item(),
            "dead_fraction": dead / sum(t.shape[1] for t in tensors),
            "nonfinite": float((~torch.isfinite(values)).sum()),
        }
    return stats


def activations(rank: int, log_dir: Path) -> dict[str, Any]:
    torch.manual_seed(0)
    net = shard(TutorialNet(), LAYERS)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05)
    stats = ActivationStats(every_n_steps=ACTIVATION_EVERY)
    references = {}
    hooks = [hook_count(net)]  # FSDP's own, then with the Tracker's, then after it closed
    with Tracker(net, callbacks=[stats], writer=str(log_dir)) as tracker:
        hooks.append(hook_count(net))

        @tracker.train_step
        def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            optimizer.zero_grad()
            loss = F.cross_entropy(net(x), y)
            loss.backward()
            optimizer.step()
            return loss

        for index in range(ACTIVATION_STEPS):
            x, y = images(rank, index)
            if (index + 1) % ACTIVATION_EVERY == 0:  # the weights this step's forward runs with
                references[index] = reference_activations(full_copy(net), x)
            step(x, y)
    hooks.append(hook_count(net))
    return {
        "hooks": hooks,
        "model": type(net).__name__,
        "layer": type(net.fc1).__name__,
        "named_modules": [name for name, _ in net.named_modules()],
        "measured": stats.modules,
        "references": references,
    }


def nonfinite(mode: str, faulty_rank: int, fault_at: int, every: int) -> Callable[[int, Path], dict[str, Any]]:
    def run(rank: int, log_dir: Path) -> dict[str, Any]:
        torch.manual_seed(0)
        net = shard(FaultyNet(), ("fc1", "fc2"))
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
        sentinel = NonFiniteSentinel(every_n_steps=every)
        generator = torch.Generator().manual_seed(rank)
        steps = 0
        with Tracker(net, callbacks=[sentinel], writer=str(log_dir)) as tracker:

            @tracker.train_step
            def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
                optimizer.zero_grad()
                loss = F.cross_entropy(net(x), y)
                loss.backward()
                optimizer.step()
                return loss

            for index in range(5):
                net.fault.mode = mode if rank == faulty_rank and index == fault_at else None
                step(torch.randn(4, 8, generator=generator), torch.randint(0, 3, (4,), generator=generator))
                steps += 1
        return {
            "steps": steps,
            "findings": [
                {
                    "module": f.module,
                    "type_name": f.type_name,
                    "step": f.step,
                    "direction": f.direction,
                    "produced": f.produced,
                    "dtype": str(f.dtype),
                    "unplaced": f.unplaced,
                }
                for f in sentinel.findings
            ],
        }

    return run


def gradients(per_layer: bool) -> Callable[[int, Path], dict[str, Any]]:
    def run(rank: int, log_dir: Path) -> dict[str, Any]:
        torch.manual_seed(0)
        net = shard(TutorialNet(), LAYERS)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.05)
        true_norms, local_norms, fc1_weight = {}, {}, {}
        with Tracker(net, callbacks=[GradientStats(every_n_steps=2, per_layer=per_layer)], writer=str(log_dir)) as t:

            @t.train_step
            def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
                optimizer.zero_grad()
                loss = F.cross_entropy(net(x), y)
                loss.backward()
                optimizer.step()
                return loss

            for index in range(4):
                step(*images(rank, index))
                # the gradients that step used (zeroed only by the next one): whole, and this rank's shards
                grads = [p.grad for p in net.parameters()]
                true_norms[index] = torch.nn.utils.get_total_norm([g.full_tensor() for g in grads]).item()
                local_norms[index] = torch.nn.utils.get_total_norm([g.to_local() for g in grads]).item()
                fc1 = net.fc1.weight.grad
                fc1_weight[index] = [fc1.full_tensor().norm().item(), fc1.to_local().norm().item()]
            failures = {f"{owner}.{event}": count for (owner, event), count in t.callbacks.failures.items()}
        return {"true_norms": true_norms, "local_norms": local_norms, "fc1_weight": fc1_weight, "failures": failures}

    return run


SCENARIOS: dict[str, Callable[[int, Path], dict[str, Any]]] = {
    "activations": activations,
    # every_n_steps > 1: every module call measured as it runs, checked at steps 1, 3 and the run's end
    "forward_nan_on_rank1": nonfinite("forward", faulty_rank=1, fault_at=2, every=2),
    "backward_nan_on_rank0": nonfinite("backward", faulty_rank=0, fault_at=1, every=2),
    # the default, every step checked whole
    "forward_nan_checked_every_step": nonfinite("forward", faulty_rank=1, fault_at=2, every=1),
    "gradients_per_layer": gradients(per_layer=True),
    "gradients_global": gradients(per_layer=False),
}


def main(out_dir: Path) -> None:
    # a collective left waiting (a rank that stopped) fails after this long instead of hanging
    dist.init_process_group("gloo", timeout=timedelta(seconds=30))
    rank = dist.get_rank()
    report: dict[str, Any] = {"world_size": dist.get_world_size()}
    for name, scenario in SCENARIOS.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result = scenario(rank, out_dir / name)
            except Exception:  # the other scenarios still run; a rank left in a collective times out
                result = {"error": traceback.format_exc()}
        result["warnings"] = [f"{w.category.__name__}: {w.message}" for w in caught]
        report[name] = result
        dist.barrier()
    (out_dir / f"rank{rank}.json").write_text(json.dumps(report, indent=1))
    dist.destroy_process_group()


if __name__ == "__main__":  # (pytest --doctest-modules imports this file: it only runs when started)
    main(Path(sys.argv[1]))
