"""LoRA fine-tuning with peft and trl's SFTTrainer, loss on the completion (the tone) only."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from slmtune.config import Params
from slmtune.data import read_jsonl
from slmtune.environment import import_without_collector, kernel_signature

# What train_adapter reports about this run on this machine (metrics/train_run.json), apart from the figures
# that params and data decide (metrics/train.json): the latter reproduce exactly, the former never do.
RUN_KEYS = ("tokens_per_second", "peak_memory_mb", "train_runtime_s", "resumed_from_step", "cpu_kernels")
WALL_CLOCK_SUFFIXES = ("runtime", "_per_second", "_preparation_time")


def lora_config(params: Params):
    """The peft LoraConfig for the model's target modules."""
    from peft import LoraConfig

    return LoraConfig(
        r=params.train.r,
        lora_alpha=params.train.lora_alpha,
        lora_dropout=params.train.lora_dropout,
        target_modules=list(params.model.lora_target_modules),
        modules_to_save=list(params.model.modules_to_save) or None,
        use_dora=params.train.use_dora,
        task_type="CAUSAL_LM",
    )


def uses_bitsandbytes(params: Params) -> bool:
    """Whether training computes with bitsandbytes (QLoRA's 4-bit base); no other stage does."""
    return params.train.load_in_4bit


def quantization_config(params: Params):
    """The bitsandbytes 4-bit config for QLoRA, or None; compute dtype from the hardware profile."""
    if not params.train.load_in_4bit:
        return None
    from transformers import BitsAndBytesConfig

    from slmtune.models import torch_dtype

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=params.train.bnb_4bit_quant_type,
        bnb_4bit_use_double_quant=params.train.bnb_4bit_use_double_quant,
        bnb_4bit_compute_dtype=torch_dtype(params.hw.dtype),
    )


def training_split(path: Path, tokenizer, params: Params):
    """A prepared split as the trainer's `input_ids` and `labels` (loss on the completion only)."""
    from slmtune.tokenization import tokenized_split

    return tokenized_split(path, read_jsonl(path), tokenizer, params.model.max_length)


def sft_config(params: Params, output_dir: Path):
    """Trainer arguments: from `train.*` and the hardware profile `hw.*`."""
    from trl import SFTConfig

    from slmtune.distributed import world_size

    hw, train = params.hw, params.train
    paged = train.paged_optimizer and hw.device == "cuda"
    return SFTConfig(
        output_dir=str(output_dir),
        per_device_train_batch_size=hw.per_device_train_batch_size,
        per_device_eval_batch_size=hw.per_device_train_batch_size,
        gradient_accumulation_steps=hw.gradient_accumulation_steps,
        gradient_checkpointing=hw.gradient_checkpointing,
        bf16=hw.dtype == "bfloat16",
        fp16=hw.dtype == "float16",
        use_cpu=hw.device == "cpu",
        ddp_backend="gloo" if hw.device == "cpu" and world_size() > 1 else None,
        fsdp="full_shard auto_wrap" if hw.distributed == "fsdp" else "",
        optim="paged_adamw_32bit" if paged else hw.optim,
        learning_rate=train.learning_rate,
        num_train_epochs=train.num_train_epochs,
        lr_scheduler_type=train.lr_scheduler_type,
        warmup_steps=train.warmup_steps,
        weight_decay=train.weight_decay,
        max_grad_norm=train.max_grad_norm,
        logging_steps=train.logging_steps,
        eval_strategy=train.eval_strategy,
        save_strategy="steps",
        save_steps=train.save_steps,
        save_total_limit=1,
        report_to=[],
        include_num_input_tokens_seen="non_padding",  # kept in checkpoints: counts survive a resume
        seed=params.seed,
        data_seed=params.seed,
        # Padding-free batches are not truncated by trl; prepare already refused rows over max_length.
        max_length=None if train.padding_free else params.model.max_length,
        padding_free=train.padding_free,
        completion_only_loss=True,
        dataset_kwargs={"skip_prepare_dataset": True},  # training_split gives ids and labels (trl's rules)
        dataloader_num_workers=0,
        disable_tqdm=False,
    )


def count_flops_once(trainer) -> None:
    """Have `trainer` count its FLOPs (6 x tokens x non-embedding parameters) from one parameter count.

    transformers' Trainer.floating_point_ops walks every module and parameter at each step for a count
    that training never changes (3% of a tiny-default step); its docs invite overriding the method.
    """
    model = trainer.model
    if not hasattr(model, "num_parameters"):
        return
    parameters = model.num_parameters(exclude_embeddings=True)
    main_input = getattr(model, "main_input_name", "input_ids")

    def floating_point_ops(inputs) -> int:
        return 6 * inputs[main_input].numel() * parameters if main_input in inputs else 0

    trainer.floating_point_ops = floating_point_ops


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def peak_memory_mb(device: str) -> float:
    """Peak CUDA memory allocated, or this process's peak resident set size on CPU."""
    import resource

    import torch

    if device == "cuda" and torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def load_for_training(params: Params, base_dir: Path):
    """The base model in the profile's dtype and attention kernel, or in 4 bits (prepared for k-bit training)
    for QLoRA."""
    from slmtune.models import load_causal_lm

    quantization = quantization_config(params)
    model = load_causal_lm(
        base_dir, params.hw, params.model.trust_remote_code, quantization, params.hw.attn_implementation
    )
    if quantization is not None:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=params.hw.gradient_checkpointing)
    return model


def train_adapter(
    params: Params,
    base_dir: Path,
    data_dir: Path,
    checkpoints: Path,
    adapter_dir: Path | None,
    extra_callbacks: list | None = None,
) -> dict[str, Any]:
    """Fine-tune `base_dir` on the prepared splits, resuming from `checkpoints` if a run was cut short.

    Every process trains; only the one given an `adapter_dir` (the main process) saves the adapter
    and logs with dvclive (into `checkpoints/live`, which survives a crash with the checkpoints).
    `extra_callbacks` are more transformers TrainerCallbacks (the benchmark times steps with one).
    """
    import time

    import_without_collector("transformers.modeling_utils", "peft", "trl", "dvclive")
    from transformers import set_seed
    from trl import SFTTrainer

    from slmtune.checkpoints import last_checkpoint
    from slmtune.dropout import use_bitmask_dropout
    from slmtune.labelled_head import score_labelled_positions
    from slmtune.models import load_tokenizer

    set_seed(params.seed)
    tokenizer = load_tokenizer(base_dir, params.model.trust_remote_code)
    model = load_for_training(params, base_dir)
    resume = last_checkpoint(checkpoints)
    saved = _checkpoint_state(resume)  # read now: newer checkpoints replace it
    resumed_step = saved.global_step if saved else 0
    resumed_tokens = int(saved.num_input_tokens_seen or 0) if saved else 0
    callbacks = [_live_callback(checkpoints / "live", resumed_step)] if adapter_dir is not None else []
    trainer = SFTTrainer(
        model=model,
        args=sft_config(params, checkpoints),
        train_dataset=training_split(data_dir / "train.jsonl", tokenizer, params),
        eval_dataset=training_split(data_dir / "val.jsonl", tokenizer, params),
        processing_class=tokenizer,
        peft_config=lora_config(params),
        callbacks=[_log_last_step(), *callbacks, *(extra_callbacks or [])],
    )
    trainer._total_train_tokens = resumed_tokens  # trl's own token count (its num_tokens), absent from checkpoints
    score_labelled_positions(trainer.model)
    use_bitmask_dropout(trainer.model)  # torch's own dropout off the CPU
    count_flops_once(trainer)
    if resume:
        print(f"[slmtune] resuming from {resume}", flush=True)
    for callback in callbacks:  # the dvclive log up to the checkpoint, as the run wrote it then
        callback.replay(trainer.args, trainer.state, saved.log_history if saved else [])
    trainable, total = count_parameters(trainer.model)
    start = time.perf_counter()
    if saved and saved.global_step >= saved.max_steps:  # the process died after the run's last checkpoint
        result = _restore_finished_run(trainer, resume, saved)
    else:
        result = trainer.train(resume_from_checkpoint=resume)
    elapsed = time.perf_counter() - start
    evaluation = _evaluation_at(trainer.state.log_history, trainer.state.global_step) or trainer.evaluate()
    for callback in callbacks:
        callback.live.end()
    if adapter_dir is not None:
        save_adapter(trainer.model, tokenizer, adapter_dir)
    tokens = int(trainer.state.num_input_tokens_seen)
    return {
        "method": params.train.method,
        "train_loss": whole_run_loss(trainer.state.log_history, result.global_step, result.training_loss, resumed_step),
        "final_train_loss": _last_logged(trainer.state.log_history, "loss"),
        "eval_loss": round(float(evaluation["eval_loss"]), 6),
        "eval_perplexity": round(math.exp(min(float(evaluation["eval_loss"]), 50.0)), 4),
        "steps": int(result.global_step),
        "epochs": float(params.train.num_train_epochs),
        "trainable_parameters": trainable,
        "total_parameters": total,
        "processes": trainer.args.world_size,
        "resumed_from_step": resumed_step,
        "train_tokens": tokens,
        "tokens_per_second": round((tokens - resumed_tokens) / elapsed, 1) if elapsed > 0 else None,
        "peak_memory_mb": peak_memory_mb(params.hw.device),
        "train_runtime_s": round(elapsed, 2),
        "cpu_kernels": kernel_signature() if params.hw.device == "cpu" else None,
    }


def save_adapter(model, tokenizer, folder: Path) -> None:
    """Save the peft adapter and the tokenizer; adapter_config.json comes out the same on every run.

    peft keeps `target_modules` as a set, which it writes in the order of Python's per-process string
    hashing: the same adapter would get another folder hash from run to run.
    """
    import json

    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    path = folder / "adapter_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _checkpoint_state(checkpoint: str | None):
    """The TrainerState saved in a checkpoint (step, tokens seen, log history), or None for a fresh run."""
    if checkpoint is None:
        return None
    from transformers import TrainerState

    return TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json"))


def _evaluation_at(history: list[dict[str, Any]], step: int) -> dict[str, Any] | None:
    """The evaluation logged at `step` (the last epoch's, with `eval_strategy: epoch`), or None.

    The model has not changed since: evaluating it again would cost a pass over the validation split
    (seconds on a real model) for the same figures.
    """
    logged = [entry for entry in history if "eval_loss" in entry and int(entry.get("step", -1)) == step]
    return logged[-1] if logged else None


def _restore_finished_run(trainer, checkpoint: str, state):
    """Load a finished run's adapter and state from its last checkpoint, without training.

    transformers 5.23 resumes a run whose last checkpoint is its last step (a fractional epoch) by
    training one step more: the adapter, step count and token count would differ from an uninterrupted run.
    """
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers.trainer_utils import TrainOutput

    print(f"[slmtune] {checkpoint} is the run's last step: restoring it, nothing left to train", flush=True)
    set_peft_model_state_dict(trainer.model, load_file(str(Path(checkpoint) / "adapter_model.safetensors")))
    trainer.state = state
    step = state.global_step
    if trainer.args.eval_strategy == "epoch":  # the trainer evaluates at the epoch's end, after its last checkpoint
        trainer.evaluate()
    trainer.log({"total_flos": state.total_flos, "train_loss": whole_run_loss(state.log_history, step, 0.0, step)})
    return TrainOutput(global_step=step, training_loss=0.0, metrics={})


def whole_run_loss(history: list[dict[str, Any]], global_step: int, session_loss: float, resumed_step: int) -> float:
    """Mean training loss over every step, also when this process resumed at `resumed_step`, to 6 places.

    The trainer's own figure (`session_loss`) covers only the steps this process ran; the steps before
    the checkpoint come from the log it restored (exact when `save_steps` is a multiple of `logging_steps`).
    """
    if resumed_step == 0:
        return round(float(session_loss), 6)
    logged = [(int(e["step"]), float(e["loss"])) for e in history if "loss" in e and int(e["step"]) <= resumed_step]
    before_sum, last_step = 0.0, 0
    for step, loss in logged:  # each logged loss is the mean since the previous log
        before_sum += loss * (step - last_step)
        last_step = step
    run_steps = int(global_step) - resumed_step
    return round((before_sum + float(session_loss) * run_steps) / max(last_step + run_steps, 1), 6)


def is_wall_clock(key: str) -> bool:
    """A figure that depends on the machine and its load (runtime, samples per second), not on params and data."""
    return key.endswith(WALL_CLOCK_SUFFIXES)


def split_run_figures(metrics: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`metrics` as (figures that params and data decide, figures of this run on this machine)."""
    run = {key: value for key, value in metrics.items() if key in RUN_KEYS}
    return {key: value for key, value in metrics.items() if key not in RUN_KEYS}, run


def _log_last_step():
    """A callback that logs the loss at the last step too, whatever `logging_steps` is.

    The loss curve then ends where training does, and the checkpoint saved at the last step holds the
    loss of every step: a run killed after it reports the whole run's mean loss exactly.
    """
    from transformers import TrainerCallback

    class LogLastStep(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= state.max_steps:
                control.should_log = True
            return control

    return LogLastStep()


def _live_callback(live_dir: Path, resumed_step: int):
    """dvclive logging into a fresh `live_dir`; a resumed run first replays its checkpoint's log into it.

    What dvclive wrote after the checkpoint (steps the resumed run trains again, or a file cut short
    by the kill) is dropped with the folder, and the run's closing `train_loss` covers the whole run:
    a killed and resumed run logs what an uninterrupted one does.
    """
    import shutil

    from dvclive import Live
    from dvclive.plots import NumpyEncoder
    from dvclive.serialize import dump_json
    from transformers import TrainerControl
    from transformers.integrations import DVCLiveCallback

    class ReproducibleDVCLiveCallback(DVCLiveCallback):
        """dvclive's callback without the trainer's wall-clock figures, so dvclive/ is a function of params and data."""

        def on_log(self, args, state, control, model=None, logs=None, **kwargs):
            kept = {key: value for key, value in (logs or {}).items() if not is_wall_clock(key)}
            if "train_loss" in kept:
                loss = kept["train_loss"]
                kept["train_loss"] = whole_run_loss(state.log_history, state.global_step, loss, resumed_step)
            super().on_log(args, state, control, model=model, logs=kept, **kwargs)

        def replay(self, args, state, history: list[dict[str, Any]]) -> None:
            """Log `history` (a TrainerState's log_history) as the trainer logged it, step by step."""
            self.setup(args, state, None)
            for entry in history:
                logs = {key: value for key, value in entry.items() if key != "step"}
                self.on_log(args, state, TrainerControl(), logs=logs)

    class LocalLive(Live):
        """dvclive's Live, minus its per-step read-back when DVC Studio is off.

        dvclive 3.49 builds the Studio payload at every step (it parses its params YAML and every metric's
        history) before it checks whether Studio is configured: 40 ms a log, 1.4 s of the tiny default's run.
        """

        def post_data_to_studio(self):
            if "data" not in self._studio_events_to_skip:
                super().post_data_to_studio()

        def make_summary(self):
            """The summary with sorted keys: a replayed log (read back from JSON) gives the same file."""
            if self._step is not None:
                self.summary["step"] = self.step
            dump_json(self.summary, self.metrics_file, cls=NumpyEncoder, sort_keys=True)

    shutil.rmtree(live_dir, ignore_errors=True)
    live = LocalLive(dir=str(live_dir), dvcyaml=False, save_dvc_exp=False, report=None)
    return ReproducibleDVCLiveCallback(live=live)


def _last_logged(history: list[dict[str, Any]], key: str) -> float | None:
    values = [entry[key] for entry in history if key in entry]
    return round(float(values[-1]), 6) if values else None
