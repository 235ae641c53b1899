"""The Python half of ``benchmarks/gpu_smoke.sh``: its inputs, its export check, and its PASS/FAIL report.

    python benchmarks/smoke_checks.py versions
    python benchmarks/smoke_checks.py prepare WORK [--cpu]       # model folders, chat data, tokenizer round-trip
    python benchmarks/smoke_checks.py export-check WORK          # exported HF folder's held-out loss vs. val_loss
    python benchmarks/smoke_checks.py report WORK OUT [--seconds S]  # plans, checks, table, smoke.json, smoke.log
    python benchmarks/smoke_checks.py prepare-archs WORK [--cpu]  # benchmarks/gpu_archs.sh: a folder per model_type
    python benchmarks/smoke_checks.py report-archs WORK OUT       # its parity and plan rows, archs.json, archs.log

The shell scripts launch the runs (``WORK/runs/NAME``, logs in ``WORK/logs``, one line per step
in ``WORK/steps.tsv``); everything that reads numbers is here, so its thresholds sit in one place.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import random
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

GIB = 2**30
MIN_LOSS_DROP = 0.40  # the default job: first -> last step loss falls at least this much
# Largest relative differences accepted, by device. On a GPU, compute is bf16 (8 significant bits:
# each rounding is off by up to 2^-8, 0.4%) and reductions (NCCL, split-K matmuls, attention
# backward) may change order between processes and layouts, so a loss averaged over thousands of
# tokens agrees to about 1e-3; these leave margin above that. On CPU everything is fp32.
# - resume: a resumed run repeats the uninterrupted one's steps on the same layout. CPU: bit-identical.
RESUME_TOL = {"cuda": 1e-2, "cpu": 0.0}
# - export: Hugging Face's own forward (bf16 on the GPU, as the trainer computes) on the held-out
#   batches vs. the trainer's logged val_loss; CPU fp32 matches to 1e-5 as in tests/test_export.py.
EXPORT_TOL = {"cuda": 1e-2, "cpu": 1e-5}
# - parity: each step's loss on a layout vs. one device. The issue data (Qwen2-0.5B shapes, 60 bf16
#   steps, dp_shard=2 vs tp=2) differed by at most 0.32%, mean 0.05%; 2% flags a real divergence.
#   On CPU, 1e-4 per step as tests/test_parallelize.py asks.
PARITY_TOL = {"cuda": 2e-2, "cpu": 1e-4}
DEVICE_MEMORY_GIB = 80  # the budget given to shardwise plan; it only adds a memory check
MODEL_COMMON = dict(model_type="qwen2", tie_word_embeddings=True, rope_theta=1e6, rms_norm_eps=1e-6)
# The fine-tuned folder: small but not trivial (8 layers, hidden 512, ~24M parameters on the GPU).
FT_SHAPES = {
    "gpu": dict(hidden_size=512, intermediate_size=1408, num_hidden_layers=8, num_attention_heads=8,
                num_key_value_heads=4, vocab_size=512, max_position_embeddings=2048),
    "cpu": dict(hidden_size=128, intermediate_size=352, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=512, max_position_embeddings=2048),
}
# The parity model: Qwen2-0.5B shapes, but 16 query and 8 KV heads (head_dim 56) instead of 14 and 2,
# so that tp=4 and tp=8 divide it too; stored in bf16 as released checkpoints are.
PARITY_SHAPES = {
    "gpu": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=16,
                num_key_value_heads=8, vocab_size=151936, max_position_embeddings=32768),
    "cpu": dict(hidden_size=128, intermediate_size=352, num_hidden_layers=2, num_attention_heads=8,
                num_key_value_heads=8, vocab_size=320, max_position_embeddings=2048),
}
# benchmarks/gpu_archs.sh: every model_type's plan file beyond Llama/Qwen2 (this smoke's) on small real shapes,
# each with what its tiny preset adds (shardwise.model.PRESETS), sized to them by ``arch_spec``.
ARCH_PRESETS = ("tiny-llama", "tiny-qwen3", "tiny-mistral", "tiny-gemma2", "tiny-gemma3", "tiny-phi3", "tiny-olmo2",
                "tiny-granite", "tiny-qwen2-moe", "tiny-qwen3-moe", "tiny-mixtral", "tiny-olmoe")
ARCH_SHAPES = {
    "gpu": dict(hidden_size=512, intermediate_size=1408, num_hidden_layers=8, num_attention_heads=8,
                num_key_value_heads=4, vocab_size=512, max_position_embeddings=4096),
    "cpu": dict(hidden_size=128, intermediate_size=352, num_hidden_layers=4, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=320, max_position_embeddings=2048),
}
ARCH_WINDOW = {"gpu": 256, "cpu": 16}  # sliding windows: a quarter of the check's rows (gpu_archs.sh's seq_len)
# Mixtures of experts train every gpu_archs.sh run (reference and layouts) in fp32, eager. In bf16 a token whose top
# experts' router scores nearly tie goes to another expert when two runs sum in another order, and the curves part:
# on one H200, compiled against eager, 8.3e-3 to 4.5e-2 over 50 steps (calls 148-150), as wide as the errors the
# check is there to catch, while a run in fp32 stays nearer the truth than either bf16 run. transformers 5.17 cannot
# trace fp32 experts (parallelize.check_compile), so eager; bf16's compiled blocks are checked against eager bf16 on
# one GPU (call 148).
MOE_FLAGS = ("--train.dtype=float32", "--train.compile=false")
# Even in fp32 a mixture of experts' curve is chaotic: once a token's top experts' scores tie to within rounding, two
# runs that sum in another order send it to different experts, and the difference grows a few times a step. Where
# that starts is chance: OLMoE at GPU shapes (call 164) agreed to 7e-6 through step 13 at tp=2 and parted by 2.2e-2
# by step 45; at CPU shapes one process at micro-batch 2 (the "twin": the same sums in another order, no
# parallelism) parted from micro-batch 4 from step 10 (4e-6, then 7e-5) and by 2.2e-2, as tp=2 did (1.5e-2). So a
# mixture of experts is checked at fp32's tolerance over its first MOE_STEPS steps (the forward, then nine AdamW
# updates), and the rest of its curve is reported beside the twin's, which shows rounding's reach on one device.
MOE_STEPS, MOE_TOL = 10, 1e-4
CHAT_RECORDS = 400
ROUND_TRIP_TEXTS = ["Hello, world!", "déjà vu — ünïcödé ✓ 🎉", "def f(x):\n\treturn x ** 2\n", "  spaces  "]
LOG_CAP = 200_000  # characters kept of each log in smoke.log (head and tail)


def versions() -> None:
    """One line per component, the GPUs last."""
    import platform

    import torch
    import transformers

    print(f"python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
          f"transformers {transformers.__version__}, datasets {_version('datasets')}, pyarrow {_version('pyarrow')}")
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    print(f"GPUs: {len(names)}" + "".join(f"\n  {i}: {name}" for i, name in enumerate(names)))


def _version(module: str) -> str:
    try:
        return __import__(module).__version__
    except ImportError:
        return "MISSING"


# ---------------------------------------------------------------- prepare


def write_model(folder: Path, shape: dict[str, Any], dtype: str, common: dict[str, Any] = MODEL_COMMON) -> None:
    """A random-init folder (Qwen2 unless ``common`` says otherwise) as ``save_pretrained`` writes it, with the
    built-in byte tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from shardwise.data import byte_tokenizer

    spec = {**common, **shape}
    config = AutoConfig.for_model(spec.pop("model_type"), **spec)
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):  # random init is fast on a GPU
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    model.save_pretrained(folder)
    byte_tokenizer().save_pretrained(folder)


def _task(rng: random.Random) -> tuple[str, str]:
    """One learnable user/assistant exchange."""
    words = ["shard", "tensor", "parallel", "gradient", "python", "layout", "mesh", "token", "window", "rank"]
    kind, a, b, word = rng.randrange(4), rng.randrange(100), rng.randrange(100), rng.choice(words)
    if kind == 0:
        return f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}."
    if kind == 1:
        return f"Spell '{word}' backwards.", f"'{word}' backwards is '{word[::-1]}'."
    if kind == 2:
        return f"Shout '{word}'.", f"{word.upper()}!"
    return f"How many letters are in '{word}'?", f"'{word}' has {len(word)} letters."


def chat_records(n: int, seed: int = 0) -> Iterator[dict[str, list[dict[str, str]]]]:
    """``n`` conversations of one or two exchanges, some with a system turn (which is never trained on)."""
    rng = random.Random(seed)
    for _ in range(n):
        messages = [{"role": "system", "content": "Answer tersely."}] if rng.random() < 0.3 else []
        for _ in range(rng.choice([1, 1, 2])):
            question, answer = _task(rng)
            messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        yield {"messages": messages}


def tokenizer_round_trip(folder: Path) -> dict[str, Any]:
    """The saved byte tokenizer, reloaded with ``AutoTokenizer`` from a qwen2 folder (transformers 5 may pick
    Qwen2Tokenizer), must give the built-in one's ids, decode them back to the text, and render chats alike."""
    from transformers import AutoTokenizer

    from shardwise.data import byte_tokenizer

    built_in, loaded = byte_tokenizer(), AutoTokenizer.from_pretrained(folder)
    chat = next(chat_records(1, seed=1))["messages"]
    problems = [f"ids differ for {t!r}" for t in ROUND_TRIP_TEXTS if loaded(t)["input_ids"] != built_in(t)["input_ids"]]
    problems += [f"decode({t!r}) != text" for t in ROUND_TRIP_TEXTS if loaded.decode(loaded(t)["input_ids"]) != t]
    if loaded.apply_chat_template(chat, tokenize=False) != built_in.apply_chat_template(chat, tokenize=False):
        problems.append("chat template renders differently")
    if len(loaded) != len(built_in) or loaded.eos_token != built_in.eos_token:
        problems.append(f"{len(loaded)} tokens, eos {loaded.eos_token!r}")
    return {"class": type(loaded).__name__, "texts": len(ROUND_TRIP_TEXTS), "problems": problems}


def prepare(work: Path, cpu: bool) -> None:
    kind = "cpu" if cpu else "gpu"
    write_model(work / "ft-model", FT_SHAPES[kind], "float32")
    write_model(work / "parity-model", PARITY_SHAPES[kind], "bfloat16")
    with (work / "chat.jsonl").open("w") as f:
        f.writelines(json.dumps(r) + "\n" for r in chat_records(CHAT_RECORDS))
    result = {"tokenizer": tokenizer_round_trip(work / "ft-model")}
    (work / "prepare.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


def arch_spec(preset: str, kind: str) -> dict[str, Any]:
    """``preset``'s config at ``ARCH_SHAPES[kind]``: its head size, softmax scales, windows, layer pattern and expert
    sizes follow the shape, as they do in the released models the tiny presets stand for."""
    from shardwise.model import PRESETS

    shape = ARCH_SHAPES[kind]
    spec = {**PRESETS[preset], **shape}
    head_dim, layers, inner = shape["hidden_size"] // shape["num_attention_heads"], shape["num_hidden_layers"], \
        shape["intermediate_size"]
    sized = {"head_dim": head_dim, "query_pre_attn_scalar": head_dim, "attention_multiplier": 1 / head_dim,
             "sliding_window": ARCH_WINDOW[kind], "layer_types": (["sliding_attention"] * 3 + ["full_attention"]) * (
                 layers // 4), "moe_intermediate_size": inner // 4, "shared_expert_intermediate_size": inner // 2}
    return spec | {key: value for key, value in sized.items() if spec.get(key) is not None}


def arch_name(preset: str) -> str:
    """The runs' and folders' name of a preset's architecture: its ``model_type``, no dash in it."""
    from shardwise.model import PRESETS

    return PRESETS[preset]["model_type"]


def is_moe(preset: str) -> bool:
    """Whether a preset is a mixture of experts, which ``gpu_archs.sh`` trains with ``MOE_FLAGS``."""
    from types import SimpleNamespace

    from shardwise.model import PRESETS
    from shardwise.plans.decoder import num_experts

    return num_experts(SimpleNamespace(**PRESETS[preset])) > 0


def arch_flags(preset: str) -> list[str]:
    """What every ``gpu_archs.sh`` run of a preset's architecture adds to the layout's flags."""
    eager = ["--model.attn_implementation=eager"] if arch_name(preset) == "gemma2" else []  # soft-capped scores
    return eager + (list(MOE_FLAGS) if is_moe(preset) else [])


def archs() -> None:
    """One line per ``ARCH_PRESETS`` entry for ``gpu_archs.sh``: its runs' name, ``moe`` or ``dense``, then
    ``arch_flags``."""
    for preset in ARCH_PRESETS:
        print(arch_name(preset), "moe" if is_moe(preset) else "dense", *arch_flags(preset))


def prepare_archs(work: Path, cpu: bool) -> None:
    """``WORK/<model_type>``: a bf16 folder per ``ARCH_PRESETS`` entry, as released checkpoints are stored."""
    kind = "cpu" if cpu else "gpu"
    for preset in ARCH_PRESETS:
        spec = arch_spec(preset, kind)
        write_model(work / arch_name(preset), {}, "bfloat16", common=spec)
        print(f"{arch_name(preset)}: {json.dumps(spec)}")


# ---------------------------------------------------------------- export check


def run_config(run_dir: Path) -> Any:
    """The resolved ``Config`` a run logged in its ``run.json``."""
    from shardwise.config import Config, set_key

    cfg = Config()
    for section, body in json.loads((run_dir / "run.json").read_text())["config"].items():
        for key, value in body.items():
            set_key(cfg, f"{section}.{key}", value)
    return cfg


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def held_out_loss(model: Any, cfg: Any, tokenizer: Any, device: Any) -> float:
    """The trainer's ``val_loss`` recomputed by a plain HF model: the token-level mean CE over the first
    ``data.val_batches`` global batches of held-out samples (``shardwise.train.evaluate`` over all DP ranks).
    HF's forward derives the packed-document mask from the restarting ``position_ids``, but only without a
    KV cache: the export sets ``use_cache=True`` (for generation), which would let documents see each other."""
    import torch
    import torch.nn.functional as F

    from shardwise.data import StepBatches, load_data
    from shardwise.loss import IGNORE_INDEX

    t = cfg.train
    _, val = load_data(cfg, tokenizer)
    batches = StepBatches(val, t.global_batch_size, t.micro_batch_size, 0, 1)
    total, count = 0.0, 0
    with torch.no_grad():
        for step in range(cfg.data.val_batches):
            for batch in batches(step):
                logits = model(input_ids=batch.input_ids.to(device), position_ids=batch.position_ids.to(device),
                               use_cache=False).logits
                labels = batch.labels.to(device).flatten()
                total += F.cross_entropy(logits.flatten(0, 1).float(), labels, reduction="sum").item()
                count += int((labels != IGNORE_INDEX).sum())
    return total / count


def export_check(work: Path) -> None:
    """Load ``WORK/export`` with ``from_pretrained`` (on the GPU in the trainer's compute dtype) and
    recompute ft-a's last val_loss; writes ``WORK/export.json``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from shardwise.run import compute_dtype

    run_dir, folder = work / "runs" / "ft-a", work / "export"
    cfg = run_config(run_dir)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = compute_dtype(cfg, device)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(device).eval()
    logged = [r for r in read_metrics(run_dir) if r["val_loss"] is not None][-1]
    loss = held_out_loss(model, cfg, AutoTokenizer.from_pretrained(folder), device)
    val = logged["val_loss"]
    result = {"step": logged["step"], "val_loss": val, "hf_loss": loss, "rel_diff": abs(loss - val) / val,
              "dtype": str(dtype), "device": str(device)}
    (work / "export.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


# ---------------------------------------------------------------- report


def row(check: str, ok: bool | None, figure: str, **details: Any) -> dict[str, Any]:
    """One line of the table; ``ok`` None is SKIP."""
    return {"check": check, "status": "SKIP" if ok is None else "PASS" if ok else "FAIL", "figure": figure, **details}


class Work:
    """What the shell script left in WORK: step exit codes and durations, runs, side results."""

    def __init__(self, work: Path):
        self.root = work
        lines = (work / "steps.tsv").read_text().splitlines() if (work / "steps.tsv").exists() else []
        self.steps = {name: {"rc": int(rc), "seconds": int(s)} for name, rc, s in (ln.split("\t") for ln in lines)}

    def run_dir(self, name: str) -> Path:
        return self.root / "runs" / name

    def failed(self, name: str) -> str | None:
        """Why a run cannot be checked, or None when it exited 0 and logged steps."""
        if name not in self.steps:
            return f"{name} did not run"
        if self.steps[name]["rc"]:
            return f"{name} exited {self.steps[name]['rc']} (see smoke.log)"
        return None if read_metrics(self.run_dir(name)) else f"{name} logged no steps"

    def runs_like(self, ref: str) -> list[str]:
        """The runs compared with ``ref`` ("X-1", one device): the others named "X-...", in the order they ran."""
        prefix = ref.removesuffix("1")
        return [n for n in self.steps if n.startswith(prefix) and n != ref]

    def json(self, name: str) -> dict[str, Any] | None:
        path = self.root / name
        return json.loads(path.read_text()) if path.exists() else None

    def device(self) -> str:
        for d in sorted((self.root / "runs").glob("*/run.json")):
            return json.loads(d.read_text())["device"]
        return "cpu"


def rel_gaps(curve: list[float], ref: list[float]) -> list[float]:
    return [abs(a - b) / abs(b) for a, b in zip(curve, ref, strict=True)]


def check_default(w: Work) -> list[dict[str, Any]]:
    """1. The no-argument job learns: loss falls >= 40%, and held-out loss falls."""
    if why := w.failed("default"):
        return [row("1 default job learns", False, why)]
    r = read_metrics(w.run_dir("default"))
    val = [x["val_loss"] for x in r if x["val_loss"] is not None]
    drop = 1 - r[-1]["loss"] / r[0]["loss"]
    ok = drop >= MIN_LOSS_DROP and len(val) >= 2 and val[-1] < val[0]
    val_text = f"val {val[0]:.3f} -> {val[-1]:.3f}" if val else "no val_loss"
    return [row("1 default job learns", ok, f"loss {r[0]['loss']:.3f} -> {r[-1]['loss']:.3f} (-{drop:.0%}, "
                f"need {MIN_LOSS_DROP:.0%}), {val_text}", loss_drop=drop, val_losses=val, steps=len(r))]


def check_finetune(w: Work) -> list[dict[str, Any]]:
    """2. The saved tokenizer round-trips; the HF folder fine-tunes on chat data (tp=2 with 2+ devices)."""
    tok = (w.json("prepare.json") or {}).get("tokenizer")
    if tok is None:
        rows = [row("2 tokenizer round-trip", False, "prepare failed (see smoke.log)")]
    else:
        found = f"; {tok['problems']}" if tok["problems"] else ""
        rows = [row("2 tokenizer round-trip", not tok["problems"],
                    f"{tok['class']}: {tok['texts']} texts, chat template{found}", **tok)]
    if why := w.failed("ft-a"):
        return rows + [row("2 fine-tune HF folder", False, why)]
    r, info = read_metrics(w.run_dir("ft-a")), json.loads((w.run_dir("ft-a") / "run.json").read_text())
    ok = r[-1]["loss"] < r[0]["loss"]
    return rows + [row("2 fine-tune HF folder", ok, f"tp={info['mesh']['tp']}, {info['num_params']:,} params, loss "
                       f"{r[0]['loss']:.3f} -> {r[-1]['loss']:.3f} in {len(r)} steps", mesh=info["mesh"])]


def check_resume(w: Work, device: str) -> list[dict[str, Any]]:
    """3. ft-b, resumed from ft-a's step-10 in a new process, repeats ft-a's later losses."""
    if why := w.failed("ft-a") or w.failed("ft-b"):
        return [row("3 resume", False, why)]
    a = {x["step"]: x for x in read_metrics(w.run_dir("ft-a"))}
    b = read_metrics(w.run_dir("ft-b"))
    if not b or any(x["step"] not in a for x in b):
        return [row("3 resume", False, f"ft-b logged steps {[x['step'] for x in b]}, ft-a has {sorted(a)}")]
    gaps = rel_gaps([x["loss"] for x in b], [a[x["step"]]["loss"] for x in b])
    val = [x for x in b if x["val_loss"] is not None and a[x["step"]]["val_loss"] is not None]
    gaps += rel_gaps([x["val_loss"] for x in val], [a[x["step"]]["val_loss"] for x in val])
    tol = RESUME_TOL[device]
    return [row("3 resume", all(g <= tol for g in gaps), f"steps {b[0]['step']}..{b[-1]['step']} loss and {len(val)} val_loss: "
                f"max rel diff {max(gaps):.2e} (tol {tol:g})", max_rel_diff=max(gaps), rel_diffs=gaps, tolerance=tol)]


def check_export(w: Work, device: str) -> list[dict[str, Any]]:
    """4. The export of ft-a's last checkpoint, in plain HF, gives the trainer's val_loss."""
    result = w.json("export.json")
    if result is None:
        why = w.failed("ft-a") or next((f"{s} exited {w.steps[s]['rc']}" for s in ("export", "export-check")
                                        if w.steps.get(s, {}).get("rc")), "export-check wrote no result")
        return [row("4 export -> from_pretrained", False, why)]
    tol = EXPORT_TOL[device]
    return [row("4 export -> from_pretrained", result["rel_diff"] <= tol,
                f"step {result['step']}: HF {result['hf_loss']:.5f} vs val_loss {result['val_loss']:.5f}, rel "
                f"{result['rel_diff']:.2e} (tol {tol:g})", **result, tolerance=tol)]


def check_parity(w: Work, device: str, ref_run: str = "parity-1", check: str = "5 parity",
                 moe: bool = False) -> list[dict[str, Any]]:
    """5. Every layout's loss curve against the one-device curve (``ref_run``; the others: ``Work.runs_like``); a
    mixture of experts' (``moe``) over its first ``MOE_STEPS`` steps at ``MOE_TOL``, the rest reported."""
    names = w.runs_like(ref_run)
    if not names:
        return [row(check, None, "needs 2 devices")]
    if why := w.failed(ref_run):
        return [row(check, False, why)]
    prefix = ref_run.removesuffix("1")
    ref, twin = loss_curve(w, ref_run), prefix + "twin"
    twin_curve = loss_curve(w, twin) if moe and not w.failed(twin) else []
    rows = []
    for name in names:
        label = f"{check} {name.removeprefix(prefix)} vs 1"
        curve = [] if (why := w.failed(name)) else loss_curve(w, name)
        if not why and len(curve) != len(ref):
            why = f"{len(curve)} steps vs {len(ref)}"
        if why:
            rows.append(row(label, False, why))
        elif moe:
            rows.append(moe_parity(label, curve, ref, twin_curve if name != twin else []))
        else:
            rows.append(curve_parity(label, curve, ref, PARITY_TOL[device]))
    return rows


def loss_curve(w: Work, name: str) -> list[float]:
    return [x["loss"] for x in read_metrics(w.run_dir(name))]


def gap_figures(gaps: list[float]) -> str:
    return f"max rel gap {max(gaps):.2e}, mean {sum(gaps) / len(gaps):.2e}"


def curve_parity(label: str, curve: list[float], ref: list[float], tol: float) -> dict[str, Any]:
    """Every step within ``tol`` (a NaN fails: it compares false)."""
    gaps = rel_gaps(curve, ref)
    return row(label, all(g <= tol for g in gaps), f"{len(ref)} steps: {gap_figures(gaps)} (tol {tol:g})",
               max_rel_gap=max(gaps), mean_rel_gap=sum(gaps) / len(gaps), tolerance=tol)


def moe_parity(label: str, curve: list[float], ref: list[float], twin: list[float]) -> dict[str, Any]:
    """The first ``MOE_STEPS`` steps within ``MOE_TOL``, every step finite; the rest's gap beside the twin's (none
    given for the twin itself)."""
    gaps = rel_gaps(curve, ref)
    head, tail = gaps[:MOE_STEPS], gaps[MOE_STEPS:]
    ok = all(g <= MOE_TOL for g in head) and all(math.isfinite(x) for x in curve)
    figure = f"steps 1-{len(head)}: max rel gap {max(head):.2e} (tol {MOE_TOL:g})"
    twin_tail = rel_gaps(twin, ref)[MOE_STEPS:] if len(twin) == len(ref) else []
    if tail:
        figure += f"; {MOE_STEPS + 1}-{len(gaps)}: {gap_figures(tail)}"
        figure += f" (twin: {gap_figures(twin_tail)})" if twin_tail else ""
    return row(label, ok, figure, max_rel_gap=max(gaps), first_steps_max_rel_gap=max(head), tolerance=MOE_TOL,
               steps_checked=len(head), twin_later_max_rel_gap=max(twin_tail, default=None))


def plan_for(run_dir: Path) -> dict[str, Any]:
    """``shardwise plan --world-size N --device-memory-gib 80 --json`` of the resolved config a run logged."""
    from shardwise.cli import main

    info = json.loads((run_dir / "run.json").read_text())
    overrides = [f"--{s}.{k}={v}" for s, body in info["config"].items() for k, v in body.items()]
    args = ["plan", "--world-size", str(info["world_size"]), "--device-memory-gib", str(DEVICE_MEMORY_GIB), "--json"]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args + overrides)
    try:
        return json.loads(out.getvalue()) | {"exit_code": code}
    except json.JSONDecodeError:
        return {"exit_code": code, "error": (err.getvalue() or out.getvalue()).strip()[-500:]}


def check_plans(w: Work, device: str) -> list[dict[str, Any]]:
    """6. The plan's memory total per device is an upper bound of the measured peak (rank 0's, every step)."""
    rows = []
    for name in w.steps:
        if not (w.run_dir(name) / "run.json").exists():
            continue
        label = f"6 plan memory {name}"
        if why := w.failed(name):
            rows.append(row(label, None, why))
            continue
        plan = plan_for(w.run_dir(name))
        if "memory_bytes" not in plan:
            rows.append(row(label, False, f"plan failed: {plan.get('error', plan.get('checks'))}"))
            continue
        estimate = plan["memory_bytes"]["total"] / GIB
        peaks = [x["peak_mem_gib"] for x in read_metrics(w.run_dir(name)) if x["peak_mem_gib"] is not None]
        if not peaks:  # CPU: nothing to bound; the row shows that plan ran on the run's config
            rows.append(row(label, True, f"estimate {estimate:.3f} GiB; no device peak on CPU", estimate_gib=estimate,
                            memory_bytes=plan["memory_bytes"]))
            continue
        ratio = estimate / max(peaks)
        rows.append(row(label, ratio >= 1, f"estimate {estimate:.3g} / peak {max(peaks):.3g} GiB = {ratio:.2f}",
                        estimate_gib=estimate, peak_gib=max(peaks), ratio=ratio, memory_bytes=plan["memory_bytes"]))
    return rows


def run_summaries(w: Work) -> dict[str, Any]:
    out = {}
    for name, step in w.steps.items():
        r, run_json = read_metrics(w.run_dir(name)), w.run_dir(name) / "run.json"
        if not run_json.exists():
            out[name] = step
            continue
        info = json.loads(run_json.read_text())
        tail = r[len(r) // 2:]
        out[name] = {**step, "mesh": info["mesh"], "world_size": info["world_size"], "num_params": info["num_params"],
                     "steps": [x["step"] for x in r], "loss": [x["loss"] for x in r],
                     "val_loss": {x["step"]: x["val_loss"] for x in r if x["val_loss"] is not None},
                     "peak_mem_gib": max((x["peak_mem_gib"] for x in r if x["peak_mem_gib"] is not None), default=None),
                     "tokens_per_s_per_device_median_2nd_half": sorted(x["tokens_per_s_per_device"] for x in tail)[
                         len(tail) // 2] if tail else None}
    return out


def table(rows: list[dict[str, Any]]) -> str:
    width = max(len(r["check"]) for r in rows)
    lines = [f"{'check':{width}}  status  key figure", "-" * (width + 40)]
    lines += [f"{r['check']:{width}}  {r['status']:6}  {r['figure']}" for r in rows]
    fails = sum(r["status"] == "FAIL" for r in rows)
    lines.append(f"{len(rows)} checks: {fails} FAIL, {sum(r['status'] == 'SKIP' for r in rows)} SKIP")
    return "\n".join(lines)


def _capped(text: str) -> str:
    if len(text) <= LOG_CAP:
        return text
    half = LOG_CAP // 2
    return f"{text[:half]}\n[... {len(text) - LOG_CAP} characters cut ...]\n{text[-half:]}"


def write_log(w: Work, out: Path, tail: str, filename: str = "smoke.log") -> None:
    """Every step's log, in the order the steps finished, under a header; then the table."""
    logs = w.root / "logs"
    names = ["versions", "install"] + list(w.steps)
    parts = []
    for name in dict.fromkeys(names):
        path = logs / f"{name}.log"
        if path.exists():
            parts.append(f"===== {name} =====\n{_capped(path.read_text(errors='replace'))}\n")
    (out / filename).write_text("".join(parts) + "===== result =====\n" + tail + "\n")


def report(work: Path, out: Path, seconds: int | None) -> int:
    w = Work(work)
    device = w.device()
    checks: list[Callable[..., list[dict[str, Any]]]] = [check_default, check_finetune]
    rows = [r for check in checks for r in check(w)]
    rows += [r for check in (check_resume, check_export, check_parity, check_plans) for r in check(w, device)]
    text = table(rows)
    out.mkdir(parents=True, exist_ok=True)
    versions_log = work / "logs" / "versions.log"
    result = {"device": device, "runs_seconds": seconds,
              "versions": versions_log.read_text().strip() if versions_log.exists() else None,
              "tolerances": {"min_loss_drop": MIN_LOSS_DROP, "resume": RESUME_TOL[device], "export": EXPORT_TOL[device],
                             "parity": PARITY_TOL[device]},
              "checks": rows, "runs": run_summaries(w), "table": text}
    (out / "smoke.json").write_text(json.dumps(result, indent=1) + "\n")
    write_log(w, out, text)
    print(text)
    return 1 if any(r["status"] == "FAIL" for r in rows) else 0


def report_archs(work: Path, out: Path, seconds: int | None) -> int:
    """``gpu_archs.sh``'s table: each architecture's runs against its one-device run, every run's plan against its
    peak; ``OUT/archs.json`` (every number) and ``OUT/archs.log`` (every log)."""
    w = Work(work)
    device = w.device()
    ran = [p for p in ARCH_PRESETS if f"{arch_name(p)}-1" in w.steps]  # gpu_archs.sh's ARCH_NAMES may pick some
    rows = [r for p in ran for r in check_parity(w, device, f"{arch_name(p)}-1",
                                                 arch_name(p) + (" fp32 eager" if is_moe(p) else ""), is_moe(p))]
    rows += check_plans(w, device)
    text = table(rows)
    out.mkdir(parents=True, exist_ok=True)
    versions_log = work / "logs" / "versions.log"
    result = {"device": device, "runs_seconds": seconds, "parity_tolerance": PARITY_TOL[device],
              "versions": versions_log.read_text().strip() if versions_log.exists() else None,
              "configs": {arch_name(p): arch_spec(p, "cpu" if device == "cpu" else "gpu") for p in ARCH_PRESETS},
              "flags": {arch_name(p): arch_flags(p) for p in ARCH_PRESETS},
              "checks": rows, "runs": run_summaries(w), "table": text}
    (out / "archs.json").write_text(json.dumps(result, indent=1) + "\n")
    write_log(w, out, text, "archs.log")
    print(text)
    return 1 if any(r["status"] == "FAIL" for r in rows) else 0


def write_configs(work: Path) -> None:
    """The GPU shapes' model folders as ``prepare`` and ``prepare-archs`` write them, config.json only: all
    ``shardwise plan`` reads."""
    from transformers import AutoConfig

    specs = [(name, {**MODEL_COMMON, **shape}) for name, shape in (("ft-model", FT_SHAPES["gpu"]),
                                                                  ("parity-model", PARITY_SHAPES["gpu"]))]
    specs += [(arch_name(preset), arch_spec(preset, "gpu")) for preset in ARCH_PRESETS]
    for name, spec in specs:
        spec = dict(spec)
        AutoConfig.for_model(spec.pop("model_type"), **spec).save_pretrained(work / name)


def measured_runs(smoke: Path, work: Path, name: str = "smoke") -> Iterator[tuple[str, list[str], float]]:
    """Each run of a finished GPU smoke (its ``name``.json and ``name``.log; ``archs`` for ``gpu_archs.sh``) with a
    measured peak: its name, the ``shardwise plan`` arguments of its logged command (model folders in ``work``, see
    ``write_configs``) and the peak in GiB."""
    runs = json.loads((smoke / f"{name}.json").read_text())["runs"]
    commands = re.findall(r"^\$ (?:timeout \d+ )?python3 -m shardwise.cli train --output.dir=(\S+)/runs/(\S+) (.*)$",
                          (smoke / f"{name}.log").read_text(), re.MULTILINE)
    for old_work, run, rest in commands:
        peak = runs.get(run, {}).get("peak_mem_gib")
        if peak is not None:
            args = [a.replace(old_work, str(work)) for a in rest.split() if not a.startswith("--checkpoint.resume")]
            yield run, ["--world-size", str(runs[run]["world_size"]), *args], peak


def recheck_plans(smoke: Path, work: Path) -> int:
    """Check 6 again for a finished GPU smoke: today's ``shardwise plan`` of each run's logged command against the
    peak that run measured (smoke.json)."""
    from shardwise.cli import main as cli

    write_configs(work)
    failed = 0
    for name, args, peak in measured_runs(smoke, work):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            cli(["plan", "--device-memory-gib", str(DEVICE_MEMORY_GIB), "--json", *args])
        estimate = json.loads(out.getvalue())["memory_bytes"]["total"] / GIB
        failed += estimate < peak
        print(f"{'PASS' if estimate >= peak else 'FAIL'}  6 plan memory {name:16} estimate {estimate:.3g} / "
              f"peak {peak:.3g} GiB = {estimate / peak:.2f}")
    return int(failed > 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("versions")
    sub.add_parser("archs", help="gpu_archs.sh's architectures, one per line: name, moe or dense, then the flags its "
                   "runs add")
    p = sub.add_parser("prepare")
    p.add_argument("work", type=Path)
    p.add_argument("--cpu", action="store_true", help="tiny shapes for the CPU dry-run")
    sub.add_parser("export-check").add_argument("work", type=Path)
    p = sub.add_parser("report")
    p.add_argument("work", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--seconds", type=int, help="how long the runs took, for smoke.json")
    p = sub.add_parser("prepare-archs")
    p.add_argument("work", type=Path)
    p.add_argument("--cpu", action="store_true", help="tiny shapes for the CPU dry-run")
    p = sub.add_parser("report-archs")
    p.add_argument("work", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--seconds", type=int, help="how long the runs took, for archs.json")
    p = sub.add_parser("recheck-plans", help="check 6 of a finished smoke (its smoke.json, smoke.log) with today's plan")
    p.add_argument("smoke", type=Path, help="the folder holding smoke.json and smoke.log")
    p.add_argument("work", type=Path, help="where to write the model folders' config.json (GPU shapes)")
    args = parser.parse_args(argv)
    if args.command == "versions":
        versions()
    elif args.command == "archs":
        archs()
    elif args.command == "prepare":
        prepare(args.work, args.cpu)
    elif args.command == "export-check":
        export_check(args.work)
    elif args.command == "prepare-archs":
        prepare_archs(args.work, args.cpu)
    elif args.command == "report-archs":
        return report_archs(args.work, args.out, args.seconds)
    elif args.command == "recheck-plans":
        return recheck_plans(args.smoke, args.work)
    else:
        return report(args.work, args.out, args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
