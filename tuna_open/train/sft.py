"""Supervised fine-tuning with TRL's ``SFTTrainer``: loss on the response only, Alpaca prompt template.

Examples are tokenized here with the project's one prompt/response rule (``rankers.llm.tokenization``: the prompt
alone, then the response's tokens as they follow it in ``tokenizer(prompt + response)``, then EOS) and handed to
TRL already tokenized with a ``completion_mask``, so TRL masks the prompt out of the loss and SFT trains exactly
the ids that Tuna, DPO and the teacher's log-probs use for the same text.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence, TypedDict

from pydantic import NonNegativeFloat, PositiveFloat

from rankers.llm.tokenization import encode_responses
from tuna_open.train.padding import ensure_pad_token
from tuna_open.train.scaffold import train_into
from tuna_open.train.settings import LoraSettings, TrainSettings, peft_config
from tuna_open.train.trl_config import trl_args

if TYPE_CHECKING:
    from trl import SFTConfig, SFTTrainer

HISTORY_FIELDS = {"loss": "loss", "learning_rate": "learning_rate"}


class SftExample(TypedDict):
    prompt: str
    """Templated prompt."""
    response: str


class SFTSettings(TrainSettings):
    learning_rate: NonNegativeFloat = 2e-5
    num_train_epochs: PositiveFloat = 3.0
    warmup_steps: NonNegativeFloat = 0.03
    lr_scheduler_type: str = "cosine"
    max_length: int = 512
    loss_type: str = "chunked_nll"
    """TRL's loss: ``chunked_nll`` never materialises full-vocabulary logits (big vocabularies); plain ``nll`` is
    faster for tiny ones."""
    lora: LoraSettings | None = None

    def trl_config_class(self) -> type["SFTConfig"]:
        from trl import SFTConfig

        return SFTConfig


def build_sft_trainer(model_path: str, examples: Sequence[SftExample], settings: SFTSettings,
                      workdir: str | Path) -> "SFTTrainer":
    """A ready ``SFTTrainer`` on ``examples`` tokenized here (see the module docstring), with a pad token."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    rows = []
    for e in examples:
        ((context_ids, response_ids),) = encode_responses(tokenizer, e["prompt"], [e["response"]])
        rows.append({"input_ids": context_ids + response_ids,
                     "completion_mask": [0] * len(context_ids) + [1] * len(response_ids)})
    args = trl_args(settings, Path(workdir), completion_only_loss=True)
    model = AutoModelForCausalLM.from_pretrained(model_path)
    ensure_pad_token(tokenizer, model)  # before TRL, which would pad with EOS
    return SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                      peft_config=peft_config(settings.lora, "CAUSAL_LM"))


def train_sft(model_path: str, examples: Sequence[SftExample], settings: SFTSettings,
              output_dir: str | Path) -> dict[str, Any]:
    """Fine-tune ``model_path`` on ``examples``; model + tokenizer land in ``output_dir`` atomically."""
    return train_into(output_dir, settings, HISTORY_FIELDS,
                      lambda workdir: build_sft_trainer(model_path, examples, settings, workdir))
