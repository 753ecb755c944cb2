#!/usr/bin/env python3
"""The peers of `zeroscale-bench embeddings`: all-MiniLM-L6-v2 in sentence-transformers
(PyTorch) and in ONNX Runtime, in-process, on the sentences the benchmark sends.

One JSON command per line on stdin, one JSON answer per line on stdout:
- {"op": "load", "model_dir": D, "onnx": F, "threads": N}
- {"op": "batches", "engine": "st"|"ort", "chunks": [[text, ...], ...]} -> {"seconds": s}
  (one encode call per chunk, as a server embedding one request at a time would)
- {"op": "singles", "engine": "st"|"ort", "texts": [...]} -> {"seconds": [s, ...]}
Errors come back as {"error": "..."}.
"""
import json
import sys
import time

engines = {}


def load(model_dir, onnx, threads):
    import numpy as np
    import onnxruntime
    import torch
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

    torch.set_num_threads(threads)
    st = SentenceTransformer(model_dir, device="cpu")
    st.eval()

    def st_encode(texts):
        st.encode(texts, batch_size=32, convert_to_numpy=True, normalize_embeddings=False)

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(onnx, options, providers=["CPUExecutionProvider"])
    tokenizer = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
    tokenizer.enable_truncation(max_length=st.max_seq_length)
    tokenizer.enable_padding()
    names = {i.name for i in session.get_inputs()}

    def ort_encode(texts):
        encodings = tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = session.run(None, feeds)[0]
        m = mask[:, :, None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
        return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)

    engines["st"] = st_encode
    engines["ort"] = ort_encode


def main():
    for line in sys.stdin:
        try:
            command = json.loads(line)
            op = command["op"]
            if op == "load":
                load(command["model_dir"], command["onnx"], command["threads"])
                answer = {"ok": True}
            elif op == "batches":
                encode = engines[command["engine"]]
                started = time.perf_counter()
                for chunk in command["chunks"]:
                    encode(chunk)
                answer = {"seconds": time.perf_counter() - started}
            elif op == "singles":
                encode = engines[command["engine"]]
                seconds = []
                for text in command["texts"]:
                    started = time.perf_counter()
                    encode([text])
                    seconds.append(time.perf_counter() - started)
                answer = {"seconds": seconds}
            else:
                answer = {"error": f"unknown op {op}"}
        except Exception as e:  # reported to the benchmark, which stops
            answer = {"error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
