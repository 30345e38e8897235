"""`python -m slmtune.bench`: run the benchmark and write bench/results.json, bench/README.md, bench/bench.png.

Run it from the repository root (it reads the data set named by `data.source`). Extra arguments
are Hydra overrides of the benchmarked configuration, e.g. `build.quantize_embeddings=true`.
`--gpu-phi3-mini` runs the GPU decode check instead and writes bench/gpu_decode.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

from slmtune.errors import add_debug_flag, exit_on_failure


def build_parser() -> argparse.ArgumentParser:
    from slmtune.bench.gpu import GpuSettings
    from slmtune.bench.run import Settings

    defaults, gpu = Settings(), GpuSettings()
    parse = argparse.ArgumentParser(
        prog="python -m slmtune.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parse.add_argument("overrides", nargs="*", help="Hydra overrides of the benchmarked configuration")
    parse.add_argument("--out", type=Path, default=Path("bench"), help="where the results go (default: bench)")
    parse.add_argument("--workdir", type=Path, help="keep the built artifacts here (default: a temporary folder)")
    parse.add_argument("--quick", action="store_true", help="the tiny model, one repetition: a smoke test")
    parse.add_argument("--model", default=None, help=f"the conf/model profile (default: {defaults.model})")
    parse.add_argument("--repetitions", type=int, help=f"timed repetitions (default: {defaults.repetitions})")
    parse.add_argument("--warmup", type=int, help=f"untimed warm-up runs (default: {defaults.warmup})")
    parse.add_argument("--phrases", type=int, help=f"phrases timed at batch 1 (default: {defaults.latency_phrases})")
    parse.add_argument("--batch", type=int, help=f"phrases classified at once (default: {defaults.batch})")
    parse.add_argument("--new-tokens", type=int, help=f"tokens per decode run (default: {defaults.new_tokens})")
    parse.add_argument("--train-steps", type=int, help=f"steps per training run (default: {defaults.train_steps})")
    group = parse.add_argument_group("GPU decode check (writes gpu_decode.json)")
    group.add_argument("--gpu-phi3-mini", action="store_true", help="a Phi-3-mini-shaped int4 model on the GPU")
    group.add_argument(
        "--gpu-model", default=gpu.model, help=f"a conf/model entry (default: {gpu.model}; tiny_phi3: a dry run)"
    )
    group.add_argument("--gpu-provider", default=gpu.provider, choices=["cuda", "cpu"])
    group.add_argument("--gpu-prompt-tokens", type=int, default=gpu.prompt_tokens)
    group.add_argument("--gpu-new-tokens", type=int, default=gpu.new_tokens)
    group.add_argument("--bandwidth-tb-s", type=float, default=gpu.bandwidth_tb_s, help="GPU memory bandwidth")
    add_debug_flag(parse)
    return parse


def settings_from(args: argparse.Namespace):
    """The benchmark settings: defaults, then --quick, then explicit options."""
    from slmtune.bench.run import QUICK, Settings

    settings = Settings(**QUICK) if args.quick else Settings()
    explicit = {
        "model": args.model,
        "repetitions": args.repetitions,
        "warmup": args.warmup,
        "latency_phrases": args.phrases,
        "batch": args.batch,
        "new_tokens": args.new_tokens,
        "train_steps": args.train_steps,
    }
    changes = {key: value for key, value in explicit.items() if value is not None}
    return dataclasses.replace(settings, **changes, overrides=list(args.overrides))


def bench(args: argparse.Namespace, workdir: Path) -> None:
    from slmtune.atomic import atomic_write_json

    if args.gpu_phi3_mini:
        from slmtune.bench.gpu import GpuSettings, run_gpu_decode

        settings = GpuSettings(
            model=args.gpu_model,
            provider=args.gpu_provider,
            prompt_tokens=args.gpu_prompt_tokens,
            new_tokens=args.gpu_new_tokens,
            bandwidth_tb_s=args.bandwidth_tb_s,
        )
        results = run_gpu_decode(settings, workdir)
        atomic_write_json(args.out / "gpu_decode.json", results)
        print(json.dumps({k: results[k] for k in ("decode_tokens_per_s", "bandwidth_limit_tokens_per_s")}))
        print(f"[bench] wrote {args.out / 'gpu_decode.json'}", flush=True)
        return
    from slmtune.bench import report
    from slmtune.bench.run import run

    results = run(settings_from(args), workdir)
    written = report.write(results, args.out)
    for target in results["targets"]:
        verdict = "pass" if target["passed"] else "miss"
        print(f"[bench] {verdict}: {target['target']}: {target['measured']:.2f}x (goal {target['goal']})")
    print(f"[bench] wrote {', '.join(str(p) for p in written)} in {results['wall_time_s'] / 60:.1f} min", flush=True)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    exit_on_failure(lambda: bench_in_workdir(args), "bench: error: ", "bench: ")


def bench_in_workdir(args: argparse.Namespace) -> None:
    """Run the bench in `--workdir`, or in a temporary folder removed afterwards."""
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        bench(args, args.workdir)
        return
    with tempfile.TemporaryDirectory(prefix="slmtune-bench-") as workdir:
        bench(args, Path(workdir))


if __name__ == "__main__":
    main()
