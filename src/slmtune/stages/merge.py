"""Stage merge: merge the adapter into the base model in float32, save safetensors, config and tokenizer."""

from __future__ import annotations

from pathlib import Path

from slmtune.atomic import atomic_outputs
from slmtune.config import Params
from slmtune.stages.common import parser, run, stage_params

# Phrases whose logits the peft merge (adapters the tensor merge does not cover) checks against base+adapter.
CHECK_PHRASES = [
    "cricket is a wonderful sport!",
    "I miss my grandmother every single day.",
    "Something is scratching at the window and I'm shaking.",
    "No way, the store gave me a free cake!",
]


def main(argv: list[str] | None = None) -> None:
    parse = parser(__doc__)
    parse.add_argument("--base", type=Path, default=Path("models/base"))
    parse.add_argument("--adapter", type=Path, default=Path("models/adapter"))
    parse.add_argument("--out", type=Path, default=Path("models/merged"))
    args = parse.parse_args(argv)
    run("merge", lambda: merge(stage_params(args.params), args.base, args.adapter, args.out))


def merge(params: Params, base: Path, adapter: Path, out: Path) -> None:
    """Merge `adapter` into `base` in full precision, into `out`, after checking both folders."""
    from slmtune.merging import merge_adapter
    from slmtune.models import check_adapter_folder, check_model_folder
    from slmtune.prompts import Task

    check_model_folder(base)  # cheap checks first: a damaged folder fails before any model loads
    check_adapter_folder(adapter)
    task = Task.load(adapter)
    with atomic_outputs(out) as (merged_tmp,):
        trust_remote_code = params.model.trust_remote_code
        report = merge_adapter(base, adapter, merged_tmp, task.instruction, CHECK_PHRASES, trust_remote_code)
        task.save(merged_tmp)
    print(f"[slmtune] {report.summary()}", flush=True)


if __name__ == "__main__":
    main()
