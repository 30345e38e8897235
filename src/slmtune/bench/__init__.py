"""`make bench`: measure every artifact side by side on a random Phi-3 of realistic proportions.

The benchmark runs the project's own code on the `model=bench_phi3` profile: `prepare`
materialises the random model and its tokenizer, `train_lora`'s training code trains with and
without padding, `merge` merges, the onnxruntime-genai builder builds int4 and fp32 ONNX, and the
scoring classifiers classify. It writes `bench/results.json`, `bench/README.md` (tables) and
`bench/bench.png` (a plot). `--gpu-phi3-mini` is the GPU decode check (`bench/gpu_decode.json`).

    python -m slmtune.bench            # the full benchmark (make bench)
    python -m slmtune.bench --quick    # the tiny model, one repetition: a smoke test
"""
