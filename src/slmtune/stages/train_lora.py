"""Stage train_lora: fine-tune the base model with LoRA; write the adapter and training metrics."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from slmtune.atomic import atomic_outputs, atomic_write_json
from slmtune.config import Params, load_params
from slmtune.stages.common import go_offline, parser, run

MODULE = "slmtune.stages.train_lora"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parse = parser(__doc__)
    parse.add_argument("--data", type=Path, default=Path("data/prepared"))
    parse.add_argument("--base", type=Path, default=Path("models/base"))
    parse.add_argument("--out", type=Path, default=Path("models/adapter"))
    parse.add_argument("--metrics", type=Path, default=Path("metrics/train.json"))
    parse.add_argument("--live", type=Path, default=Path("dvclive/train"))
    args = parse.parse_args(argv)
    run("train_lora", lambda: train(args.params, args.data, args.base, args.out, args.metrics, args.live, argv))


def train(params_path: str, data: Path, base: Path, out: Path, metrics_path: Path, live: Path, argv: list[str]) -> None:
    params = load_params(params_path)
    from slmtune.distributed import relaunch_under_torchrun, under_launcher
    from slmtune.hardware import check_machine

    check_machine(params.hw)
    if params.hw.launcher == "torchrun" and not under_launcher():
        relaunch_under_torchrun(params.hw, MODULE, argv)
    if params.hw.launcher == "azureml":
        from slmtune.azureml import submit

        submit(params, params_path=Path(params_path), data=data, base=base, out=out, metrics=metrics_path, live=live)
        return
    train_here(params, data, base, out, metrics_path, live)


def train_here(params: Params, data: Path, base: Path, out: Path, metrics_path: Path, live: Path) -> None:
    """Train in this process (one of several under torchrun); the main process writes the outputs."""
    go_offline()
    from slmtune.checkpoints import checkpoint_dir, discard
    from slmtune.distributed import is_main_process, rank, world_size
    from slmtune.hardware import configure_threads
    from slmtune.prompts import Task
    from slmtune.training import train_adapter

    threads = configure_threads(params.hw)
    checkpoints = checkpoint_dir(params, data, base)
    print(f"[slmtune] process {rank()} of {world_size()}, {threads} threads, checkpoints in {checkpoints}", flush=True)
    if not is_main_process():
        train_adapter(params, base, data, checkpoints, adapter_dir=None)
        return
    with atomic_outputs(out, live) as (adapter_tmp, live_tmp):
        metrics = train_adapter(params, base, data, checkpoints, adapter_dir=adapter_tmp)
        Task.load(base).save(adapter_tmp)
        shutil.copytree(checkpoints / "live", live_tmp, dirs_exist_ok=True)
    atomic_write_json(metrics_path, metrics)
    discard(checkpoints)
    print(
        f"[slmtune] train loss {metrics['train_loss']}, eval loss {metrics['eval_loss']}, "
        f"{metrics['trainable_parameters']:,} trainable parameters, {metrics['tokens_per_second']} tokens/s, "
        f"peak memory {metrics['peak_memory_mb']} MB",
        flush=True,
    )


if __name__ == "__main__":
    main()
