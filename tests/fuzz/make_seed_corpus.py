#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into tests/fuzz/corpus/<target>/:
for each parser, small valid inputs covering its settings (several taken
from the committed test fixtures in tests/fixtures/) and a few broken ones
near its validation rules. The targets whose parser reads a folder take
the files as NUL-separated parts (tests/fuzz/fuzz_files.h); an empty part
is an absent file. Deterministic; standard library only.

Usage: tests/fuzz/make_seed_corpus.py [OUTPUT_DIR]   (default tests/fuzz/corpus)
"""
import hashlib
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "fixtures")

BITS = {"BOOL": 8, "U8": 8, "I8": 8, "I16": 16, "U16": 16, "I32": 32, "U32": 32, "I64": 64,
        "U64": 64, "F16": 16, "BF16": 16, "F32": 32, "F64": 64, "F8_E5M2": 8, "F8_E4M3": 8,
        "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8, "F6_E2M3": 6, "F6_E3M2": 6,
        "F4": 4, "C64": 64}


def file_of(tensors, metadata=None, raw_header=None):
    """tensors: list of (name, dtype, shape); data bytes are a counter."""
    header = {"__metadata__": metadata} if metadata is not None else {}
    offset = 0
    for name, dtype, shape in tensors:
        n = 1
        for e in shape:
            n *= e
        size = n * BITS[dtype] // 8
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    text = raw_header if raw_header is not None else json.dumps(header, separators=(",", ":"))
    text = text.encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + bytes(i % 251 for i in range(offset))


def safetensors_seeds():
    return {
        "empty.safetensors": file_of([]),
        "every_dtype.safetensors": file_of([(d.lower(), d, [4]) for d in BITS]),
        "scalar_empty_meta.safetensors": file_of(
            [("s", "F32", []), ("e", "F16", [0, 3]), ("b", "BF16", [2, 2])],
            metadata={"format": "pt", "k": "v"}),
        "six_dims.safetensors": file_of([("x", "F32", [1, 2, 1, 2, 1, 2])]),
        "null_meta.safetensors": file_of([("w", "F64", [3])], raw_header='{"__metadata__":null,"w":'
                                         '{"dtype":"F64","shape":[3],"data_offsets":[0,24]}}'),
        "overlap.safetensors": file_of([], raw_header='{"a":{"dtype":"U8","shape":[4],'
                                       '"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],'
                                       '"data_offsets":[2,6]}}') + b"\0" * 6,
        "size_mismatch.safetensors": file_of([], raw_header='{"w":{"dtype":"F32","shape":[2,3],'
                                             '"data_offsets":[0,12]}}') + b"\0" * 12,
        "too_large.safetensors": struct.pack("<Q", 100000001) + b"{}",
        "duplicate.safetensors": file_of([], raw_header='{"a":{"dtype":"U8","shape":[1],'
                                         '"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],'
                                         '"data_offsets":[0,1]}}') + b"x",
    }


def compact(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def fixture(*path):
    with open(os.path.join(FIXTURES, *path), "rb") as f:
        return f.read()


def fixture_json(*path):
    """A fixture's JSON, re-written compactly (small seeds)."""
    return compact(json.loads(fixture(*path)))


def parts(*files):
    """The NUL-separated parts of a folder input (b"" = absent file)."""
    return b"\0".join(files)


def module_config_seeds():
    seeds = {}
    folder = os.path.join(FIXTURES, "modules")
    for name in sorted(os.listdir(folder)):
        if os.path.exists(os.path.join(folder, name, "config.json")):
            seeds[name + ".json"] = fixture_json("modules", name, "config.json")
    seeds["transformer.json"] = compact({
        "module": "torch.nn.Transformer", "d_model": 16, "nhead": 2, "num_encoder_layers": 1,
        "num_decoder_layers": 1, "dim_feedforward": 8, "activation": "gelu",
        "layer_norm_eps": 1e-6, "norm_first": True, "bias": False, "dtype": "torch.float32"})
    seeds["encoder_stack_nested.json"] = compact({
        "module": "torch.nn.TransformerEncoder", "num_layers": 3, "enable_nested_tensor": False,
        "mask_check": True, "encoder_layer": {"d_model": 8.0, "nhead": 2}})
    seeds["unknown_key.json"] = compact({"module": "torch.nn.MultiheadAttention",
                                         "embed_dim": 8, "num_heads": 2, "fancy": 1})
    seeds["wrong_types.json"] = compact({"module": "clattn.SelfAttention", "in_dim": "8",
                                         "attn_dim": 2.5, "bias": 1, "dtype": "float16"})
    seeds["not_object.json"] = b"[1,2,3]"
    # Regressions (inputs that crashed the target; see the README's Reliability table).
    seeds["regress_negative_eps.json"] = compact({
        "module": "torch.nn.TransformerDecoderLayer", "d_model": 2, "nhead": 2,
        "dim_feedforward": 40, "activation": "gelu", "layer_norm_eps": -1e05})
    seeds["regress_eps_past_float.json"] = compact({"module": "torch.nn.Transformer",
                                                    "layer_norm_eps": 1e39})
    return seeds


def bert_config_seeds():
    config = fixture_json("embed", "tiny_bert", "config.json")
    modules = compact([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize",
         "type": "sentence_transformers.models.Normalize"}])
    pooling = compact({"word_embedding_dimension": 32, "pooling_mode_cls_token": False,
                       "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
                       "pooling_mode_mean_sqrt_len_tokens": False})
    return {
        "config_only": parts(config),
        "sentence_transformers": parts(config, modules, pooling,
                                       compact({"max_seq_length": 48, "do_lower_case": False})),
        "pooling_mode_max": parts(config, modules, compact({"pooling_mode": "max"})),
        "two_poolings": parts(config, modules, compact({"pooling_mode_cls_token": True,
                                                        "pooling_mode_max_tokens": True})),
        "escape_path": parts(config, compact([
            {"type": "sentence_transformers.models.Transformer"},
            {"type": "sentence_transformers.models.Pooling", "path": "../x"}])),
        "bad_values": parts(compact({"model_type": "bert", "hidden_size": 30,
                                     "num_attention_heads": 4, "layer_norm_eps": 2,
                                     "hidden_act": "swish", "is_decoder": True})),
        "not_bert": parts(compact({"model_type": "roberta"})),
    }


def lm_config_seeds():
    seeds = {}
    folder = os.path.join(FIXTURES, "lm")
    for name in sorted(os.listdir(folder)):
        if os.path.exists(os.path.join(folder, name, "config.json")):
            gen = os.path.join(folder, name, "generation_config.json")
            seeds[name] = parts(fixture_json("lm", name, "config.json"),
                                fixture_json("lm", name, "generation_config.json")
                                if os.path.exists(gen) else b"")
    small = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4,
             "num_hidden_layers": 3, "num_key_value_heads": 2, "vocab_size": 64}
    seeds["mistral_window"] = parts(compact(dict(small, model_type="mistral",
                                                 architectures=["MistralForCausalLM"],
                                                 sliding_window=16, eos_token_id=[1, 2])))
    seeds["qwen2_layer_types"] = parts(compact(dict(
        small, model_type="qwen2", use_sliding_window=True, sliding_window=8,
        max_window_layers=1, layer_types=["full_attention", "sliding_attention",
                                          "sliding_attention"])))
    seeds["llama_rope_linear"] = parts(compact(dict(
        small, model_type="llama", rope_scaling={"type": "linear", "factor": 2.0})),
        compact({"eos_token_id": 3, "bos_token_id": 0}))
    seeds["llama_rope_v5"] = parts(compact(dict(
        small, model_type="llama", head_dim=16, rope_parameters={
            "rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192})))
    seeds["gpt2_bad"] = parts(compact({"model_type": "gpt2", "n_embd": 30, "n_head": 4,
                                       "activation_function": "tanh", "n_inner": 0}))
    seeds["yarn"] = parts(compact(dict(small, model_type="llama",
                                       rope_scaling={"rope_type": "yarn", "factor": 4.0})))
    seeds["bad_ids"] = parts(compact(dict(small, model_type="llama", eos_token_id=[1] * 9)),
                             compact({"eos_token_id": 64}))
    # Regressions (inputs that crashed the target; see the README's Reliability table).
    seeds["regress_head_dim_zero"] = parts(compact({"hidden_size": 3, "num_key_value_heads": 2,
                                                    "model_type": "qwen2"}))
    seeds["regress_eps_past_float"] = parts(compact(dict(
        small, model_type="mistral", rms_norm_eps=1e306,
        rope_scaling={"factor": 3.0, "type": "linear"})))
    return seeds


def tokenizer_load_seeds():
    seeds = {}
    for folder in ["bpe/gpt2", "bpe/llama2", "bpe/llama3", "bpe/metaspace", "bpe/qwen2",
                   "bpe/smollm"]:
        seeds[folder.replace("/", "_")] = parts(fixture_json(*folder.split("/"), "tokenizer.json"),
                                                fixture_json(*folder.split("/"),
                                                             "tokenizer_config.json"))
    seeds["wordpiece_json"] = parts(fixture_json("tokenizer", "tiny", "tokenizer.json"))
    seeds["wordpiece_vocab"] = parts(b"", fixture_json("tokenizer", "tiny_vocab",
                                                       "tokenizer_config.json"),
                                     fixture("tokenizer", "tiny_vocab", "vocab.txt"))
    seeds["vocab_no_unk"] = parts(b"", b"", b"a\nb\n##c\n")
    seeds["bpe_unknown_merge"] = parts(compact({"model": {
        "type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a c"]}}))
    # Found by the long run: a template id outside the vocabulary loaded,
    # and encode gave an id without a token.
    tiny = json.loads(fixture_json("tokenizer", "tiny", "tokenizer.json"))
    tiny["post_processor"] = {"type": "BertProcessing", "sep": ["[SEP]", 999999],
                              "cls": ["[CLS]", 2]}
    seeds["regress_template_id_outside_vocab"] = parts(compact(tiny))
    # Found by the long run: one id of 4e8 made a 3 GB id table.
    seeds["regress_sparse_ids"] = parts(compact({"model": {
        "type": "BPE", "vocab": {"a": 0, "b": 400000000}, "merges": []}}))
    return seeds


def tokenizer_encode_seeds():
    texts = [b"Hello, world! The quick brown fox isn't 42.",
             "Caf\u00e9 \u00fcber na\u00efve \u4e2d\u6587 \U0001F600 \u0301e".encode(),
             b"  spaces\tand\nnewlines  \r\n", b"[CLS] [SEP] [UNK] <s> </s> <|endoftext|>",
             b"\xff\xfe invalid \xc3 utf8 \xed\xa0\x80", b"A" * 64]
    seeds = {}
    for which, name in enumerate(["wordpiece", "gpt2", "llama2"]):
        for i, text in enumerate(texts):
            flags = which | (4 if i % 2 else 0) | (8 if i % 3 == 0 else 0)
            seeds[f"{name}_{i}"] = bytes([flags, 0 if i < 4 else 7]) + text
    return seeds


def npy_file(descr, shape, data, version=1, fortran=False):
    header = ("{'descr': '%s', 'fortran_order': %s, 'shape': %s, }"
              % (descr, "True" if fortran else "False",
                 "(" + ", ".join(str(e) for e in shape)
                 + ("," if len(shape) == 1 else "") + ")"))
    size_bytes = 2 if version == 1 else 4
    pre = 6 + 2 + size_bytes
    header += " " * (-(pre + len(header) + 1) % 64) + "\n"
    length = struct.pack("<H" if version == 1 else "<I", len(header))
    return b"\x93NUMPY" + bytes([version, 0]) + length + header.encode("latin-1") + data


def npy_seeds():
    return {
        "f4_2x3.npy": npy_file("<f4", [2, 3], struct.pack("<6f", *range(6))),
        "f8_3.npy": npy_file("<f8", [3], struct.pack("<3d", 0.5, -1.0, 1e300)),
        "i4_4.npy": npy_file("<i4", [4], struct.pack("<4i", 1, -2, 3, 2**31 - 1)),
        "i8_2x2_v2.npy": npy_file("<i8", [2, 2], struct.pack("<4q", 0, 1, -1, 2**62), version=2),
        "b1_3.npy": npy_file("|b1", [3], b"\x00\x01\x00"),
        "scalar_v3.npy": npy_file("<f4", [], struct.pack("<f", 3.0), version=3),
        "empty.npy": npy_file("<f4", [0, 5], b""),
        "fortran.npy": npy_file("<f4", [2, 2], b"\0" * 16, fortran=True),
        "bigendian.npy": npy_file(">f4", [1], b"\0" * 4),
        "short_data.npy": npy_file("<f4", [4], b"\0" * 12),
        "bad_bool.npy": npy_file("|b1", [2], b"\x00\x02"),
    }


# fuzz_cache_entry.c's key and the entry layout of src/core/cache.c.
CACHE_KEY = b"clattn-fuzz-key\nsrc=0123456789abcdef\nopts=-cl-std=CL1.2\n"


def cache_entry(key, binary, digest=None):
    if digest is None:
        digest = hashlib.sha256(struct.pack("<Q", len(key)) + key + struct.pack("<Q", len(binary))
                                + binary).digest()
    return (b"CLATTNB2" + struct.pack("<Q", len(key)) + key + struct.pack("<Q", len(binary))
            + digest + binary)


def cache_entry_seeds():
    good = cache_entry(CACHE_KEY, b"\x7fELF binary bytes")
    return {
        "valid": good,
        "valid_one_byte": cache_entry(CACHE_KEY, b"\0"),
        "truncated": good[:-3],
        "padded": good + b"\0",
        "wrong_hash": cache_entry(CACHE_KEY, b"abc", digest=b"\0" * 32),
        "other_key": cache_entry(CACHE_KEY.replace(b"fuzz", b"fuzy"), b"abc"),
        "old_magic": b"CLATTNB1" + good[8:],
        "header_only": good[:16],
    }


def server_routes_seeds():
    embed, tei, complete = 0, 1, 2
    def req(route, outcome, body):
        return bytes([route | outcome << 2]) + compact(body)
    return {
        "embeddings": req(embed, 0, {"input": ["hello world", "the fox"], "model": "x"}),
        "embeddings_ids_base64": req(embed, 0, {"input": [[1, 2, 3]], "encoding_format": "base64",
                                                "dimensions": 4}),
        "embeddings_full": req(embed, 1, {"input": "one text"}),
        "embeddings_failed": req(embed, 2, {"input": "one text", "user": "u"}),
        "tei": req(tei, 0, {"inputs": ["a", "b"], "truncate": True, "normalize": False}),
        "tei_long": req(tei, 0, {"inputs": "word " * 40}),
        "completion": req(complete, 0, {"prompt": "Once upon a time", "max_tokens": 8,
                                        "temperature": 0.7, "top_p": 0.9, "top_k": 40,
                                        "stop": ["\n", "."], "seed": 1}),
        "completion_stream": req(complete, 3, {"prompt": [1, 2, 3], "stream": True,
                                               "repeat_penalty": 1.1, "min_p": 0.05}),
        "completion_failed": req(complete, 2, {"prompt": ["text"], "presence_penalty": 0.5,
                                               "frequency_penalty": -0.5}),
        "completion_full": req(complete, 1, {"prompt": "x"}),
        "completion_unsupported": req(complete, 0, {"prompt": "x", "n": 2, "logprobs": 1,
                                                    "echo": True, "best_of": 3}),
        "not_json": bytes([complete]) + b"{\"prompt\": ",
    }


TARGETS = {
    "safetensors": safetensors_seeds,
    "module_config": module_config_seeds,
    "bert_config": bert_config_seeds,
    "lm_config": lm_config_seeds,
    "tokenizer_load": tokenizer_load_seeds,
    "tokenizer_encode": tokenizer_encode_seeds,
    "npy": npy_seeds,
    "cache_entry": cache_entry_seeds,
    "server_routes": server_routes_seeds,
}


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "corpus")
    for target, make in TARGETS.items():
        out = os.path.join(root, target)
        os.makedirs(out, exist_ok=True)
        seeds = make()
        for name, data in seeds.items():
            with open(os.path.join(out, name), "wb") as f:
                f.write(data)
        print(f"wrote {len(seeds)} seeds to {out}")


if __name__ == "__main__":
    main()
