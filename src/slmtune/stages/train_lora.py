"""Stage train_lora: fine-tune the base model with LoRA; write the adapter and training metrics."""

from __future__ import annotations

from pathlib import Path

from slmtune.atomic import atomic_outputs, atomic_write_json
from slmtune.config import load_params
from slmtune.stages.common import go_offline, parser, run


def main(argv: list[str] | None = None) -> None:
    parse = parser(__doc__)
    parse.add_argument("--data", type=Path, default=Path("data/prepared"))
    parse.add_argument("--base", type=Path, default=Path("models/base"))
    parse.add_argument("--out", type=Path, default=Path("models/adapter"))
    parse.add_argument("--metrics", type=Path, default=Path("metrics/train.json"))
    parse.add_argument("--live", type=Path, default=Path("dvclive/train"))
    args = parse.parse_args(argv)
    run("train_lora", lambda: train(args.params, args.data, args.base, args.out, args.metrics, args.live))


def train(params_path: str, data: Path, base: Path, out: Path, metrics_path: Path, live: Path) -> None:
    params = load_params(params_path)
    from slmtune.hardware import check_machine, configure_threads

    check_machine(params.hw)
    go_offline()
    configure_threads(params.hw)
    from slmtune.prompts import Task
    from slmtune.training import train_adapter

    with atomic_outputs(out, live) as (adapter_tmp, live_tmp):
        metrics = train_adapter(params, base, data, adapter_tmp, live_tmp)
        Task.load(base).save(adapter_tmp)
    atomic_write_json(metrics_path, metrics)
    print(
        f"[slmtune] train loss {metrics['train_loss']}, eval loss {metrics['eval_loss']}, "
        f"{metrics['trainable_parameters']:,} trainable parameters",
        flush=True,
    )


if __name__ == "__main__":
    main()
