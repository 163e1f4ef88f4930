#!/usr/bin/env python3
"""Times clattn's benchmark cases with CPU peers on the same machine and
prints the ratios, all measured in one run.

    tools/bench-peers.py attention [clattn-bench options...]
    tools/bench-peers.py embed [--rounds N] [clattn-bench options...]
    tools/bench-peers.py train [clattn-bench options...]
    tools/bench-peers.py generate [--rounds N] [--prompt N] [--gen N] [--no-torch] [MODEL_DIR ...]

Runs `clattn-bench attention --json` (same options), then times the same
shapes with numpy (float32 matmuls through its BLAS, usually OpenBLAS) and,
when torch is importable, with torch.nn.functional.scaled_dot_product_attention
on the CPU. Also times numpy SGEMM at n = 2048, the reference point of the
issue's target "fused attention >= 0.75x OpenBLAS SGEMM".

`embed` runs `clattn-bench embed --json`, then encodes the same texts (made
by the same generator) with sentence-transformers on the CPU (PyTorch,
float32, the same batch size, best of the same number of runs), in
--rounds N alternating rounds (default 3), and prints each side's best
sentences/second and the ratio. The model folder is $CLATTN_MODEL, else
models/all-MiniLM-L6-v2.

`train` runs `clattn-bench train --json` (the fused attention backward,
one training step of clattn-train's encoder classifier, and one of a Llama
decoder), then times the same steps in PyTorch on the CPU: the model of
tests/fixtures/make_train_fixtures.py at the sizes clattn-bench reports,
zero_grad + forward + cross-entropy + backward + Adam step, and
transformers' LlamaForCausalLM with AdamW; float32, best of the runs,
and prints both and the ratio.

`generate` times one decoder model folder (default: the two made by
tools/make-bench-models.py, SmolLM2-135M's and Qwen2.5-0.5B's shapes in
bf16) in alternating rounds: `clattn-bench generate --json` (prefill of a
512-token prompt, 128 decode steps at batch 1 and 8), then llama.cpp
through llama-cpp-python on the folder's .gguf (converted at the same
precision by the converter in llama-cpp-python's source; batch 8 through
its low-level llama_batch API, 8 sequences), then transformers on PyTorch
CPU in the file's dtype (eager attention, its KV cache, batch 8 as one
batched forward per step). Every side feeds the same kind of random
token ids and reads the logits back each step; each side's best of the
rounds is printed with the ratios. Threads: all the machine's cores for
each peer.

FLOPs are counted as clattn-bench does: 2 (D + Dv) per visible (query, key)
pair (4 N M D for D = Dv without masks)."""
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.environ.get("CLATTN_BENCH", os.path.join(HERE, "..", "build", "tools", "clattn-bench"))


def timed(fn, min_seconds=0.5, max_reps=50):
    """Best-of timing after one warm-up call (seconds per call)."""
    fn()
    best, total, reps = float("inf"), 0.0, 0
    while total < min_seconds and reps < max_reps:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best, total, reps = min(best, dt), total + dt, reps + 1
    return best


def visible_mask(n, m, wl, wr):
    """Boolean [n, m]: FlashAttention bottom-right aligned window."""
    i = np.arange(n)[:, None] + (m - n)
    j = np.arange(m)[None, :]
    ok = np.ones((n, m), dtype=bool)
    if wl >= 0:
        ok &= j >= i - wl
    if wr >= 0:
        ok &= j <= i + wr
    return ok


def case_window(c):
    mask = c["mask"]
    if mask == "none":
        return -1, -1
    if mask.startswith("causal"):
        wl = int(mask.split("L=")[1]) if "L=" in mask else -1
        return wl, 0
    wl, wr = mask[len("window("):-1].split(",")
    return int(wl), int(wr)


def numpy_attention(q, k, v, ok):
    g = q.shape[1] // k.shape[1]
    k = np.repeat(k, g, axis=1)
    v = np.repeat(v, g, axis=1)
    s = np.matmul(q, np.swapaxes(k, -1, -2)) * np.float32(1.0 / np.sqrt(q.shape[-1]))
    if ok is not None:
        s = np.where(ok, s, np.float32(-np.inf))
    s -= s.max(axis=-1, keepdims=True)
    np.exp(s, out=s)
    s /= s.sum(axis=-1, keepdims=True)
    return np.matmul(s, v)


WORDS = ("the quick brown fox jumps over lazy dog a man is eating food in park while "
         "children play with ball near river city market opens early every morning people "
         "buy fresh bread and fruit from local farmers who travel long way to sell their "
         "goods music plays softly on radio").split()


def bench_texts(count, words, seed):
    """The texts of clattn-bench embed (same LCG, same word list)."""
    x, out = seed, []
    for _ in range(count):
        ws = []
        for _ in range(words):
            x = (x * 6364136223846793005 + 1442695040888963407) % (1 << 64)
            ws.append(WORDS[(x >> 33) % len(WORDS)])
        out.append(" ".join(ws))
    return out


def embed(args):
    """clattn-bench embed and sentence-transformers in alternating rounds:
    this machine's speed drifts by up to 25% over minutes, so each side's
    best over the rounds is taken from the same stretch of time."""
    rounds = 3
    if "--rounds" in args:
        i = args.index("--rounds")
        rounds = int(args[i + 1])
        args = args[:i] + args[i + 2:]
    import torch
    from sentence_transformers import SentenceTransformer
    model_dir = os.environ.get("CLATTN_MODEL") or os.path.join(HERE, "..", "models",
                                                               "all-MiniLM-L6-v2")
    model = SentenceTransformer(model_dir, device="cpu")
    reps = 3
    if "--reps" in args:
        reps = int(args[args.index("--reps") + 1])
    ours, peers, res = {}, {}, None
    for r in range(rounds):
        print(f"round {r + 1}/{rounds}: {BENCH} embed --json {' '.join(args)}", file=sys.stderr)
        res = json.loads(subprocess.run([BENCH, "embed", "--json", *args], check=True,
                                        capture_output=True, text=True).stdout)
        for s in res["sets"]:
            ours[s["name"]] = max(ours.get(s["name"], 0.0), s["texts_per_s"])
            texts = bench_texts(s["texts"], s["words"], s["seed"])
            with torch.inference_mode():
                model.encode(texts, batch_size=res["batch"])  # warm-up
                best = float("inf")
                for _ in range(reps):
                    t0 = time.perf_counter()
                    model.encode(texts, batch_size=res["batch"])
                    best = min(best, time.perf_counter() - t0)
            peers[s["name"]] = max(peers.get(s["name"], 0.0), s["texts"] / best)
    print(f"device: {res['platform']} / {res['device']}")
    print(f"peer: sentence-transformers on PyTorch {torch.__version__} CPU, "
          f"{torch.get_num_threads()} threads; batch {res['batch']}; best of {reps} runs "
          f"in each of {rounds} alternating rounds")
    print("set    texts  tokens   clattn/s  torch/s   clattn/torch")
    for s in res["sets"]:
        name = s["name"]
        print(f"{name:<6s} {s['texts']:5d} {s['mean_tokens']:7.1f} {ours[name]:9.1f} "
              f"{peers[name]:8.1f}   {ours[name] / peers[name]:8.2f}x")
    return 0


def train(args):
    print(f"running {BENCH} train --json {' '.join(args)}", file=sys.stderr)
    res = json.loads(subprocess.run([BENCH, "train", "--json", *args], check=True,
                                    capture_output=True, text=True).stdout)
    import torch
    sys.path.insert(0, os.path.join(HERE, "..", "tests", "fixtures"))
    from make_train_fixtures import NearestValueClassifier, classifier_batch
    print(f"device: {res['platform']} / {res['device']}")
    for a in res["cases"]:
        print(f"attention B={a['b']} Hq={a['hq']} N={a['n']} M={a['m']} D={a['d']} "
              f"mask {a['mask']}: forward {a['forward_gflops']:.1f} GFLOP/s, backward "
              f"{a['backward_gflops']:.1f} GFLOP/s (2.5x forward FLOPs), ratio {a['ratio']:.2f}")
    print(f"peer: PyTorch {torch.__version__} CPU, {torch.get_num_threads()} threads")
    print("step                       B    N    d  heads   ff layers  clattn ms  torch ms  "
          "torch/clattn")
    for c in res["train_steps"]:
        torch.manual_seed(0)
        model = NearestValueClassifier(c["d_model"], c["nhead"], c["dim_ff"], c["layers"])
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        x, y = classifier_batch(torch.Generator().manual_seed(0), c["batch"], c["seq"])
        loss_fn = torch.nn.CrossEntropyLoss()

        def step():
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()

        peer_ms = timed(step, min_seconds=1.0, max_reps=c.get("reps", 20)) * 1e3
        print(f"{c['name']:<24s} {c['batch']:4d} {c['seq']:4d} {c['d_model']:4d} "
              f"{c['nhead']:6d} {c['dim_ff']:4d} {c['layers']:6d} {c['ms']:10.2f} "
              f"{peer_ms:9.2f}  {peer_ms / c['ms']:8.2f}x")
    for c in res.get("lm_steps", []):
        peer_ms = torch_lm_step_ms(c)
        print(f"{'lm (Llama, vocab ' + str(c['vocab']) + ')':<24s} {c['batch']:4d} "
              f"{c['seq']:4d} {c['hidden']:4d} {c['heads']:6d} {c['ff']:4d} {c['layers']:6d} "
              f"{c['ms']:10.2f} {peer_ms:9.2f}  {peer_ms / c['ms']:8.2f}x")
    return 0


def torch_lm_step_ms(c):
    """transformers' LlamaForCausalLM (SDPA attention, untied head) at
    clattn-bench's LM step size: zero_grad, forward with labels (the
    shifted mean cross-entropy), backward, AdamW; best of the runs, ms."""
    import torch
    import transformers
    cfg = transformers.LlamaConfig(
        vocab_size=c["vocab"], hidden_size=c["hidden"], intermediate_size=c["ff"],
        num_hidden_layers=c["layers"], num_attention_heads=c["heads"],
        num_key_value_heads=c["heads"], max_position_embeddings=c["seq"],
        tie_word_embeddings=False, attn_implementation="sdpa")
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(0, c["vocab"], (c["batch"], c["seq"]),
                        generator=torch.Generator().manual_seed(0))

    def step():
        opt.zero_grad()
        model(input_ids=ids, labels=ids, use_cache=False).loss.backward()
        opt.step()

    return timed(step, min_seconds=2.0, max_reps=c.get("reps", 5)) * 1e3



def llama_cpp_side(gguf, prompt, gen, batch):
    """llama.cpp: prefill tokens/s of one prompt, and decode tokens/s of
    `batch` sequences (each prefilled with the prompt), best of one run."""
    import ctypes
    import llama_cpp
    global _llama_quiet
    if "_llama_quiet" not in globals():
        # llama.cpp logs every load to stderr; the ratios are what count here.
        _llama_quiet = llama_cpp.llama_log_callback(lambda level, text, user: None)
        llama_cpp.llama_log_set(_llama_quiet, ctypes.c_void_p())
    # Room for every sequence, rounded up as llama.cpp pads its cache.
    n_ctx = ((prompt + gen + 8) * batch + 511) // 256 * 256
    # The low-level API: the high-level Llama class has no n_seq_max.
    llama_cpp.llama_backend_init()
    mp = llama_cpp.llama_model_default_params()
    model = llama_cpp.llama_model_load_from_file(gguf.encode(), mp)
    cp = llama_cpp.llama_context_default_params()
    cp.n_ctx, cp.n_batch, cp.n_ubatch, cp.n_seq_max = n_ctx, prompt, prompt, batch
    cp.n_threads = cp.n_threads_batch = os.cpu_count()
    ctx = llama_cpp.llama_init_from_model(model, cp)
    vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model))
    rng = np.random.default_rng(0)
    ids = [int(x) for x in rng.integers(0, vocab, prompt)]
    lb = llama_cpp.llama_batch_init(max(prompt, batch), 0, batch)
    mem = llama_cpp.llama_get_memory(ctx)

    def submit(tokens, seqs, positions, logits_last):
        lb.n_tokens = len(tokens)
        for i, (t, s_, p) in enumerate(zip(tokens, seqs, positions)):
            lb.token[i], lb.pos[i], lb.n_seq_id[i] = t, p, 1
            lb.seq_id[i][0] = s_
            lb.logits[i] = 1 if (logits_last == "all" or i == len(tokens) - 1) else 0
        rc = llama_cpp.llama_decode(ctx, lb)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc} ({len(tokens)} tokens)")

    def read_logits(n):
        for i in range(n):
            np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, i), shape=(vocab,)).copy()

    llama_cpp.llama_memory_clear(mem, True)
    t0 = time.perf_counter()
    submit(ids, [0] * prompt, range(prompt), "last")
    read_logits(0)
    llama_cpp.llama_synchronize(ctx)
    prefill = prompt / (time.perf_counter() - t0)
    llama_cpp.llama_memory_clear(mem, True)
    for s_ in range(batch):
        submit(ids, [s_] * prompt, range(prompt), "last")
    llama_cpp.llama_synchronize(ctx)
    t0 = time.perf_counter()
    for step in range(gen):
        toks = [int(x) for x in rng.integers(0, vocab, batch)]
        submit(toks, list(range(batch)), [prompt + step] * batch, "all")
        read_logits(batch)
    decode = batch * gen / (time.perf_counter() - t0)
    llama_cpp.llama_batch_free(lb)
    llama_cpp.llama_free(ctx)
    llama_cpp.llama_model_free(model)
    return prefill, decode


def torch_side(folder, prompt, gen, batch):
    """transformers on PyTorch CPU, in the file's dtype, eager attention."""
    import torch
    import transformers
    torch.set_num_threads(os.cpu_count())
    m = transformers.AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager",
                                                          dtype="auto").eval()
    vocab = m.config.vocab_size
    rng = np.random.default_rng(0)
    ids = torch.tensor([[int(x) for x in rng.integers(0, vocab, prompt)]])
    with torch.no_grad():
        t0 = time.perf_counter()
        m(ids, use_cache=False).logits[:, -1].float().numpy()
        prefill = prompt / (time.perf_counter() - t0)
        out = m(ids.repeat(batch, 1), use_cache=True)
        past = out.past_key_values
        t0 = time.perf_counter()
        for step in range(gen):
            toks = torch.tensor([[int(x)] for x in rng.integers(0, vocab, batch)])
            out = m(toks, past_key_values=past, use_cache=True)
            past = out.past_key_values
            out.logits[:, -1].float().numpy()
        decode = batch * gen / (time.perf_counter() - t0)
    return prefill, decode


def generate(args):
    rounds, prompt, gen = 2, 512, 128
    # --no-torch: transformers on the CPU takes minutes per round at these
    # sizes (3 to 12 times slower than clattn); leave it out to time more.
    with_torch = "--no-torch" not in args
    args = [a for a in args if a != "--no-torch"]
    for flag in ("--rounds", "--prompt", "--gen"):
        if flag in args:
            i = args.index(flag)
            val = int(args[i + 1])
            args = args[:i] + args[i + 2:]
            rounds, prompt, gen = ({"--rounds": (val, prompt, gen), "--prompt": (rounds, val, gen),
                                    "--gen": (rounds, prompt, val)})[flag]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folders = args or [os.path.join(base, "clattn", "bench-models", n)
                       for n in ("smollm2-135m-shape-bf16", "qwen2.5-0.5b-shape-bf16")]
    import platform
    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"prompt {prompt} tokens, {gen} decode steps")
    for folder in folders:
        best = {}
        def keep(key, value):
            best[key] = max(best.get(key, 0.0), value)
        for r in range(rounds):
            cmd = [BENCH, "generate", "--model", folder, "--prompt", str(prompt), "--gen",
                   str(gen), "--batch", "1,8", "--no-attention", "--reps", "1", "--json"]
            res = json.loads(subprocess.run(cmd, check=True, capture_output=True,
                                            text=True).stdout)
            keep("clattn prefill", res["prefill_tokens_per_s"])
            for d in res["decode"]:
                keep(f"clattn decode b{d['batch']}", d["tokens_per_s"])
                keep(f"clattn GB/s b{d['batch']}", d["gb_s"])
            keep("copy GB/s", res["copy_gb_s"])
            for b in (1, 8):
                p, d = llama_cpp_side(folder + ".gguf", prompt, gen, b)
                if b == 1:
                    keep("llama.cpp prefill", p)
                keep(f"llama.cpp decode b{b}", d)
                if with_torch:
                    p, d = torch_side(folder, prompt, gen, b)
                    if b == 1:
                        keep("torch prefill", p)
                    keep(f"torch decode b{b}", d)
        print(f"\n{os.path.basename(folder)} ({res['dtype']}, {res['file_bytes'] / 1e6:.0f} MB)")
        print(f"  {'':14s} {'clattn':>9s} {'llama.cpp':>10s} {'torch':>9s} "
              f"{'vs llama.cpp':>13s} {'vs torch':>9s}   (tokens/s)")
        for label, key in (("prefill", "prefill"), ("decode b1", "decode b1"),
                           ("decode b8", "decode b8")):
            c, l = best[f"clattn {key}"], best[f"llama.cpp {key}"]
            t = best.get(f"torch {key}", float("nan"))
            print(f"  {label:14s} {c:9.1f} {l:10.1f} {t:9.1f} {c / l:12.2f}x {c / t:8.2f}x")
        print(f"  decode b1 reads {best['clattn GB/s b1']:.1f} GB/s: "
              f"{100 * best['clattn GB/s b1'] / best['copy GB/s']:.0f}% of the device copy "
              f"bandwidth ({best['copy GB/s']:.1f} GB/s)")
    return 0


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "embed":
        return embed(sys.argv[2:])
    if len(sys.argv) >= 2 and sys.argv[1] == "train":
        return train(sys.argv[2:])
    if len(sys.argv) >= 2 and sys.argv[1] == "generate":
        return generate(sys.argv[2:])
    if len(sys.argv) < 2 or sys.argv[1] != "attention":
        print(__doc__)
        return 2
    args = sys.argv[2:]
    print(f"running {BENCH} attention --json {' '.join(args)}", file=sys.stderr)
    out = subprocess.run([BENCH, "attention", "--json", *args], check=True,
                         capture_output=True, text=True).stdout
    res = json.loads(out)
    try:
        import torch
        import torch.nn.functional as F
        torch_version = torch.__version__
    except Exception as e:  # torch is optional
        torch, torch_version = None, f"not importable ({type(e).__name__})"

    n = res["sgemm_n"]
    a = np.random.rand(n, n).astype(np.float32)
    b = np.random.rand(n, n).astype(np.float32)
    np_sgemm = 2 * n ** 3 / timed(lambda: a @ b) * 1e-9

    print(f"device: {res['platform']} / {res['device']}")
    print(f"numpy {np.__version__}, torch {torch_version}, {os.cpu_count()} CPUs")
    print(f"SGEMM n={n}: clattn/CLBlast {res['sgemm_gflops']:.1f} GFLOP/s, "
          f"numpy/BLAS {np_sgemm:.1f} GFLOP/s")
    print(" B  Hq Hkv     N     M   D  mask           clattn  numpy  torch  "
          "vs-numpy vs-torch vs-BLAS-sgemm   (GFLOP/s)")
    rng = np.random.default_rng(0)
    for c in res["cases"]:
        B, Hq, Hkv, N, M, D, Dv = (c[x] for x in ("b", "hq", "hkv", "n", "m", "d", "dv"))
        wl, wr = case_window(c)
        ok = visible_mask(N, M, wl, wr) if (wl >= 0 or wr >= 0) else None
        pairs = ok.sum() if ok is not None else N * M
        flops = 2.0 * (D + Dv) * pairs * B * Hq
        q = rng.standard_normal((B, Hq, N, D), dtype=np.float32)
        k = rng.standard_normal((B, Hkv, M, D), dtype=np.float32)
        v = rng.standard_normal((B, Hkv, M, Dv), dtype=np.float32)
        np_gf = float("nan")
        if B * Hq * N * M * 4 <= 1 << 30:
            np_gf = flops / timed(lambda: numpy_attention(q, k, v, ok)) * 1e-9
        t_gf = float("nan")
        if torch is not None:
            tq, tk, tv = (torch.from_numpy(x) for x in (q, k, v))
            g = Hq // Hkv
            tk, tv = tk.repeat_interleave(g, 1), tv.repeat_interleave(g, 1)
            # Plain causal self-attention uses torch's own is_causal path
            # (top-left and bottom-right alignment agree when N == M);
            # other windows need an explicit boolean mask (True = attend).
            plain_causal = c["mask"] == "causal" and N == M
            tm = torch.from_numpy(ok) if ok is not None and not plain_causal else None
            with torch.no_grad():
                t_gf = flops / timed(lambda: F.scaled_dot_product_attention(
                    tq, tk, tv, attn_mask=tm, is_causal=plain_causal)) * 1e-9
        ours = c["gflops"]
        print(f"{B:2d} {Hq:3d} {Hkv:3d} {N:5d} {M:5d} {D:3d}  {c['mask']:<13s} {ours:6.1f} "
              f"{np_gf:6.1f} {t_gf:6.1f}  {ours / np_gf:7.2f}x {ours / t_gf:7.2f}x "
              f"{ours / np_sgemm:8.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
