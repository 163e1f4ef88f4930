#!/usr/bin/env python3
"""Makes a BERT folder of all-MiniLM-L6-v2's shape (384 wide, 6 layers, 12
heads, 1536 intermediate, 512 positions) with random weights and MiniLM's
own tokenizer files, for timing clattn-bench embed where the 90 MB model
cannot be fetched (tools/gpu-check on a machine without internet: the
tokenizer files, under 1 MB, travel; the weights do not). The texts get
exactly MiniLM's tokens, so the work is the real model's; the vectors
mean nothing.

    python3 tools/make-embed-bench-model.py OUT_DIR TOKENIZER_DIR

TOKENIZER_DIR holds MiniLM's vocab.txt and tokenizer_config.json (and
tokenizer.json, special_tokens_map.json when there), e.g.
models/all-MiniLM-L6-v2."""
import json
import os
import shutil
import sys

FILES = ("vocab.txt", "tokenizer_config.json", "tokenizer.json", "special_tokens_map.json")


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: make-embed-bench-model.py OUT_DIR TOKENIZER_DIR")
    out, tok = sys.argv[1], sys.argv[2]
    if os.path.exists(os.path.join(out, "model.safetensors")):
        print(out)
        return
    if not os.path.exists(os.path.join(tok, "vocab.txt")):
        sys.exit(f"make-embed-bench-model.py: {tok} has no vocab.txt")
    import torch
    from transformers import BertConfig, BertModel
    torch.manual_seed(0)
    n_vocab = sum(1 for _ in open(os.path.join(tok, "vocab.txt"), encoding="utf-8"))
    cfg = BertConfig(vocab_size=n_vocab, hidden_size=384, num_hidden_layers=6,
                     num_attention_heads=12, intermediate_size=1536,
                     max_position_embeddings=512, hidden_act="gelu")
    BertModel(cfg).eval().save_pretrained(out, safe_serialization=True)
    for f in FILES:
        if os.path.exists(os.path.join(tok, f)):
            shutil.copy(os.path.join(tok, f), out)
    # sentence-transformers' settings of MiniLM: mean pooling, normalised,
    # 256 tokens.
    json.dump({"max_seq_length": 256, "do_lower_case": False},
              open(os.path.join(out, "sentence_bert_config.json"), "w"))
    print(out)


if __name__ == "__main__":
    main()
