"""Stage build_int4: build an int4 ONNX model for ONNX Runtime GenAI from the merged model."""

from __future__ import annotations

from pathlib import Path

from slmtune.atomic import atomic_outputs
from slmtune.config import Params
from slmtune.stages.common import parser, run, stage_params


def main(argv: list[str] | None = None) -> None:
    parse = parser(__doc__)
    parse.add_argument("--merged", type=Path, default=Path("models/merged"))
    parse.add_argument("--out", type=Path, default=Path("models/int4"))
    args = parse.parse_args(argv)
    run("build_int4", lambda: build(stage_params(args.params), args.merged, args.out))


def build(params: Params, merged: Path, out: Path) -> None:
    """Build the int4 ONNX model of `merged` into `out`, with its task card, and load it once."""
    from slmtune.export import build_onnx, check_buildable, check_onnx_folder
    from slmtune.models import check_model_folder, check_tokenizer_folder
    from slmtune.prompts import Task

    check_model_folder(merged)
    check_tokenizer_folder(merged)
    task = Task.load(merged)
    check_buildable(merged)
    with atomic_outputs(out) as (onnx_tmp,):
        build_onnx(merged, onnx_tmp, params.build, params.hw.execution_provider)
        task.save(onnx_tmp)
        check_onnx_folder(onnx_tmp)


if __name__ == "__main__":
    main()
