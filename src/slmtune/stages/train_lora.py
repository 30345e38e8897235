"""Stage train_lora: fine-tune the base model with LoRA; write the adapter and training metrics."""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from slmtune.atomic import atomic_outputs, atomic_write_json
from slmtune.config import Params
from slmtune.stages.common import parser, run, stage_params

MODULE = "slmtune.stages.train_lora"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parse = parser(__doc__)
    parse.add_argument("--data", type=Path, default=Path("data/prepared"))
    parse.add_argument("--base", type=Path, default=Path("models/base"))
    parse.add_argument("--out", type=Path, default=Path("models/adapter"))
    parse.add_argument("--metrics", type=Path, default=Path("metrics/train.json"))
    parse.add_argument("--run-metrics", type=Path, default=Path("metrics/train_run.json"), help="wall-clock figures")
    parse.add_argument("--live", type=Path, default=Path("dvclive/train"))
    parse.add_argument(
        "--checkpoint-root", type=Path, help="where checkpoints are kept (default .slmtune-cache/train_lora)"
    )
    args = parse.parse_args(argv)
    run("train_lora", lambda: launch(args, argv))


def launch(args: argparse.Namespace, argv: list[str]) -> None:
    """Train here, or hand the stage to the profile's launcher (torchrun, Azure ML) with the same arguments."""
    from slmtune.training import uses_bitsandbytes

    params = stage_params(args.params, bitsandbytes=uses_bitsandbytes)
    data, base, out, live = args.data, args.base, args.out, args.live
    from slmtune.distributed import relaunch_under_torchrun, under_launcher
    from slmtune.hardware import check_machine

    check_machine(params.hw)
    if params.hw.launcher == "torchrun" and not under_launcher():
        relaunch_under_torchrun(params.hw, MODULE, argv)
    if params.hw.launcher == "azureml":
        from slmtune.azureml import submit

        submit(
            params,
            params_path=Path(args.params),
            data=data,
            base=base,
            out=out,
            metrics=args.metrics,
            run_metrics=args.run_metrics,
            live=live,
        )
        return
    train(params, data, base, out, Outputs(args.metrics, args.run_metrics, live), args.checkpoint_root)


@dataclass(frozen=True)
class Outputs:
    """Where train_lora writes besides the adapter: reproducible metrics, this run's wall-clock figures, dvclive."""

    metrics: Path
    run_metrics: Path
    live: Path


def train(
    params: Params, data: Path, base: Path, out: Path, outputs: Outputs, checkpoint_root: Path | None = None
) -> None:
    """Train in this process (one of several under torchrun); the main process writes the outputs."""
    from slmtune.checkpoints import CACHE_ROOT, checkpoint_dir, discard
    from slmtune.distributed import is_main_process, rank, world_size
    from slmtune.environment import configure_threads, kernel_capability
    from slmtune.prompts import Task
    from slmtune.training import split_run_figures, train_adapter

    threads = configure_threads(params.hw.num_threads)
    checkpoints = checkpoint_dir(params, data, base, checkpoint_root or CACHE_ROOT)
    print(
        f"[slmtune] process {rank()} of {world_size()}, {threads} threads, ATen kernels {kernel_capability()}, "
        f"checkpoints in {checkpoints}",
        flush=True,
    )
    if not is_main_process():
        train_adapter(params, base, data, checkpoints, adapter_dir=None)
        return
    with atomic_outputs(out, outputs.live) as (adapter_tmp, live_tmp):
        metrics, run = split_run_figures(train_adapter(params, base, data, checkpoints, adapter_dir=adapter_tmp))
        Task.load(base).save(adapter_tmp)
        shutil.copytree(checkpoints / "live", live_tmp, dirs_exist_ok=True)
    atomic_write_json(outputs.run_metrics, run)
    atomic_write_json(outputs.metrics, metrics)
    discard(checkpoints)
    print(
        f"[slmtune] train loss {metrics['train_loss']}, eval loss {metrics['eval_loss']}, "
        f"{metrics['trainable_parameters']:,} trainable parameters, {run['tokens_per_second']} tokens/s, "
        f"peak memory {run['peak_memory_mb']} MB",
        flush=True,
    )


if __name__ == "__main__":
    main()
