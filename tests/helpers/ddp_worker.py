"""Run by ``test_ddp.py``, under ``accelerate launch`` or plain ``python``: a few Tuna steps of the tiny model.

The main process writes the number of processes and the training history to ``--result``; the model goes to
``--out``.
"""

from __future__ import annotations

import argparse
import json

import torch
from accelerate import PartialState

from tuna_open.train.tuna_trainer import TunaTrainConfig, train_tuna

PROMPT = "### Instruction:\nAdd {a} and {b}.\n\n### Response:\n"
# Different candidate counts and lengths, so a wrong per-process normalisation would show.
EXAMPLES = [
    {"prompt": PROMPT.format(a=1, b=2), "candidates": ["3", "3 0", "rank: [0, 1, 2, 3]"]},
    {"prompt": PROMPT.format(a=12, b=30), "candidates": ["42", "The quick brown fox"]},
    {"prompt": PROMPT.format(a=4, b=4), "candidates": ["8", "9", "8 8", "0123456789"]},
    {"prompt": PROMPT.format(a=7, b=1), "candidates": ["8", "lazy dog"]},
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--result", required=True)
    parser.add_argument("--accumulation", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    # SGD: the update is proportional to the gradient, so a mis-scaled gradient changes the weights (Adam's
    # first step would hide it).
    config = TunaTrainConfig(learning_rate=0.5, optim="sgd", max_steps=2, per_device_batch_size=1,
                             gradient_accumulation_steps=args.accumulation, logging_steps=1,
                             lr_scheduler_type="constant", max_length=64)
    result = train_tuna(args.model, EXAMPLES, config, args.out)
    state = PartialState()
    if state.is_main_process:
        with open(args.result, "w") as f:
            json.dump({"processes": state.num_processes, "backend": state.backend, "history": result["history"]}, f)


if __name__ == "__main__":
    main()
