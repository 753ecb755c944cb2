#!/usr/bin/env python3
"""Exports the BERT encoder of a local sentence-transformers model folder to ONNX (float32,
dynamic batch and sequence axes), for the ONNX Runtime peer of `zeroscale-bench embeddings`.

Usage: export_onnx.py MODEL_DIR OUT.onnx
The model comes from the folder (installed from the pinned package); nothing is downloaded.
"""
import sys

import torch
from transformers import BertModel


class Encoder(torch.nn.Module):
    def __init__(self, bert):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.bert(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state


def main():
    model_dir, out = sys.argv[1], sys.argv[2]
    bert = BertModel.from_pretrained(model_dir, local_files_only=True).eval()
    ids = torch.ones((2, 8), dtype=torch.int64)
    axes = {0: "batch", 1: "tokens"}
    torch.onnx.export(
        Encoder(bert),
        (ids, torch.ones_like(ids), torch.zeros_like(ids)),
        out,
        input_names=["input_ids", "attention_mask", "token_type_ids"],
        output_names=["last_hidden_state"],
        dynamic_axes={
            "input_ids": axes,
            "attention_mask": axes,
            "token_type_ids": axes,
            "last_hidden_state": axes,
        },
        opset_version=17,
        dynamo=False,
    )
    print(f"exported {out}")


if __name__ == "__main__":
    main()
