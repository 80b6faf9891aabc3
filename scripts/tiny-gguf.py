#!/usr/bin/env python3
"""Writes a tiny llama-architecture GGUF with random weights for the real-engine tests.

It answers nonsense, quickly, on any CPU: 2 layers, 32-wide, about 4 MB. The vocabulary (llama's
SentencePiece, 32000 tokens) is copied from one of llama.cpp's models/ggml-vocab-*.gguf files; the
weights come from a seeded generator, so the file is the same every time.

Sampling yields valid UTF-8 text: byte tokens (<0x..>), <unk>, <s> and </s> get a logit far below
every other token, so only whole-text pieces are ever drawn (and generation stops at max_tokens or
the context, never at an end-of-sequence token). How: hidden dimension 0 carries the same positive
constant for every token, and no layer writes to it, so after the final RMS norm it is always
positive; the output row of each excluded token has a large negative weight in that dimension.

Run with llama.cpp's gguf-py on PYTHONPATH (scripts/llama-server.sh does):
  PYTHONPATH=llama.cpp/gguf-py python3 scripts/tiny-gguf.py --vocab VOCAB.gguf --out tiny.gguf
"""
import argparse

import numpy as np
import gguf

SEED = 20240518
N_EMBD = 32
N_HEAD = 2
N_HEAD_KV = 1
N_FF = 64
N_LAYER = 2
N_CTX_TRAIN = 4096
EXCLUDED_LOGIT_WEIGHT = -1000.0  # times about sqrt(N_EMBD) after the norm: far below any other logit

# ChatML-style, rendered by llama-server's Jinja engine. The markers are plain text to this vocabulary.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

TOKENIZER_KEYS = (
    "tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens", "tokenizer.ggml.scores",
    "tokenizer.ggml.token_type", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token",
)


def read_vocab(path):
    reader = gguf.GGUFReader(path)
    vocab = {}
    for key in TOKENIZER_KEYS:
        field = reader.fields.get(key)
        if field is not None:
            vocab[key] = field.contents()
    return vocab


def write_vocab(writer, vocab):
    writer.add_tokenizer_model(vocab["tokenizer.ggml.model"])
    if "tokenizer.ggml.pre" in vocab:
        writer.add_tokenizer_pre(vocab["tokenizer.ggml.pre"])
    writer.add_token_list(vocab["tokenizer.ggml.tokens"])
    writer.add_token_scores(vocab["tokenizer.ggml.scores"])
    writer.add_token_types(vocab["tokenizer.ggml.token_type"])
    writer.add_bos_token_id(int(vocab["tokenizer.ggml.bos_token_id"]))
    writer.add_eos_token_id(int(vocab["tokenizer.ggml.eos_token_id"]))
    writer.add_unk_token_id(int(vocab["tokenizer.ggml.unknown_token_id"]))
    writer.add_add_bos_token(bool(vocab.get("tokenizer.ggml.add_bos_token", True)))
    writer.add_add_eos_token(bool(vocab.get("tokenizer.ggml.add_eos_token", False)))
    writer.add_chat_template(CHAT_TEMPLATE)


def weights(rng, n_vocab, token_types):
    head_dim = N_EMBD // N_HEAD
    f32, f16 = np.float32, np.float16

    def normal(*shape, std=0.02, dtype=f32):
        return rng.normal(0.0, std, size=shape).astype(dtype)

    embd = normal(n_vocab, N_EMBD, std=0.1)
    embd[:, 0] = 1.0  # the constant dimension
    output = normal(n_vocab, N_EMBD, std=1.0)
    output[:, 0] = 0.0
    normal_type = int(gguf.TokenType.NORMAL)
    output[np.asarray(token_types) != normal_type, 0] = EXCLUDED_LOGIT_WEIGHT

    tensors = {"token_embd.weight": embd.astype(f16), "output_norm.weight": np.ones(N_EMBD, f32),
               "output.weight": output.astype(f16)}
    for i in range(N_LAYER):
        attn_output = normal(N_EMBD, N_HEAD * head_dim)
        attn_output[0, :] = 0.0  # no layer writes to the constant dimension
        ffn_down = normal(N_EMBD, N_FF)
        ffn_down[0, :] = 0.0
        tensors.update({
            f"blk.{i}.attn_norm.weight": np.ones(N_EMBD, f32),
            f"blk.{i}.attn_q.weight": normal(N_HEAD * head_dim, N_EMBD, std=0.2),
            f"blk.{i}.attn_k.weight": normal(N_HEAD_KV * head_dim, N_EMBD, std=0.2),
            f"blk.{i}.attn_v.weight": normal(N_HEAD_KV * head_dim, N_EMBD, std=0.2),
            f"blk.{i}.attn_output.weight": attn_output,
            f"blk.{i}.ffn_norm.weight": np.ones(N_EMBD, f32),
            f"blk.{i}.ffn_gate.weight": normal(N_FF, N_EMBD, std=0.2),
            f"blk.{i}.ffn_up.weight": normal(N_FF, N_EMBD, std=0.2),
            f"blk.{i}.ffn_down.weight": ffn_down,
        })
    return tensors


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", required=True, help="a llama.cpp models/ggml-vocab-*.gguf (llama SPM)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    vocab = read_vocab(args.vocab)
    n_vocab = len(vocab["tokenizer.ggml.tokens"])
    rng = np.random.default_rng(SEED)

    writer = gguf.GGUFWriter(args.out, "llama")
    writer.add_name("switchyard-tiny-llama")
    writer.add_file_type(int(gguf.LlamaFileType.MOSTLY_F16))
    writer.add_context_length(N_CTX_TRAIN)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD_KV)
    writer.add_rope_dimension_count(N_EMBD // N_HEAD)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(n_vocab)
    write_vocab(writer, vocab)
    for name, data in weights(rng, n_vocab, vocab["tokenizer.ggml.token_type"]).items():
        writer.add_tensor(name, data)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    print(f"wrote {args.out}: {n_vocab} tokens, {N_LAYER} layers, {N_EMBD} wide")


if __name__ == "__main__":
    main()
