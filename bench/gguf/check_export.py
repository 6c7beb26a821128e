"""llama.cpp loads a model exported by `tritter export --format gguf`, reproduces Tritter's logits
and tokenizes text as Tritter does.

    pip install -r bench/gguf/requirements.txt   # builds llama.cpp from source (needs cmake)
    python bench/gguf/check_export.py TRITTER_BIN MODEL_DIR [--gguf-type tq2_0|tq1_0] [--seed N]

Exports MODEL_DIR (a Tritter checkpoint) with f32 embeddings into a temporary file, reads it back
with the `gguf` package, loads it with llama-cpp-python and compares the logits of random ids
with `tritter logits --packed` on the same ids (the max relative difference, max |a - b| / max |b|,
and whether the top token agrees at every position), then compares the token ids of a text with
`tritter tokenizer encode`.

Expect a small difference, not zero: llama.cpp rounds activations to 8 bits per block of 256
values for its ternary dot product where BitNet rounds per token, and TQ blocks store γ in f16.
"""

import argparse
import json
import os
import subprocess
import tempfile

import numpy as np
from gguf import GGUFReader
from llama_cpp import Llama

TEXT = "Ternary weights: -1, 0 and +1. Ünïcödé, tabs\tand  spaces, 12345 numbers!"


def tritter_json(cmd):
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("tritter")
    parser.add_argument("model")
    parser.add_argument("--gguf-type", default="tq2_0", choices=["tq2_0", "tq1_0"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--text", default=TEXT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        path = os.path.join(out, "model.gguf")
        subprocess.run([args.tritter, "export", "--model", args.model, "--format", "gguf", "--dtype", "f32",
                        "--gguf-type", args.gguf_type, "--out", path], check=True)
        reader = GGUFReader(path)
        arch = bytes(reader.fields["general.architecture"].parts[-1]).decode()
        types = sorted({t.tensor_type.name for t in reader.tensors})
        print(f"gguf reads {len(reader.tensors)} tensors ({', '.join(types)}), architecture {arch}")

        llm = Llama(model_path=path, logits_all=True, n_ctx=max(64, args.tokens), n_threads=os.cpu_count(),
                    verbose=False)
        vocab = llm.n_vocab()
        rng = np.random.default_rng(args.seed)
        ids = rng.integers(0, vocab, args.tokens).tolist()
        llm.eval(ids)
        theirs = np.array(llm.scores[: len(ids)], dtype=np.float64)
        ours = tritter_json([args.tritter, "logits", "--model", args.model, "--packed",
                             "--ids", ",".join(map(str, ids))])
        ours = np.array(ours["logits"], dtype=np.float64).reshape(theirs.shape)
        diff = np.abs(ours - theirs).max() / np.abs(ours).max()
        top = (ours.argmax(-1) == theirs.argmax(-1)).mean()
        print(f"llama.cpp {arch} ({args.gguf_type}), {len(ids)} tokens: max relative logit difference "
              f"{diff:.3e}, top token agrees at {top:.0%} of positions")

        tokenizer = os.path.join(args.model, "tokenizer.json")
        encode = [args.tritter, "tokenizer", "encode", "--text", args.text]
        ours = tritter_json(encode + (["--tokenizer", tokenizer] if os.path.isfile(tokenizer) else []))["ids"]
        theirs = llm.tokenize(args.text.encode(), add_bos=False, special=False)
        same = "same ids" if ours == theirs else f"DIFFERENT ids:\n  tritter   {ours}\n  llama.cpp {theirs}"
        print(f"tokenizing {len(args.text)} characters: {len(ours)} tokens, {same}")


if __name__ == "__main__":
    main()
