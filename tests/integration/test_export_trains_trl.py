"""An export is a dataset TRL trains on as it is."""

from __future__ import annotations

from pathlib import Path

from helpers.exports import export


def test_trl_dpo_trainer_trains_on_the_export(ranked_run: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    """The point of the export: TRL's own DPOTrainer, given nothing but load_dataset(DIR), trains on it."""
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    export(ranked_run, tmp_path / "dpo", "dpo")
    dataset = load_dataset(str(tmp_path / "dpo"), split="train")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    before = [p.detach().clone() for p in model.parameters()]
    args = DPOConfig(output_dir=str(tmp_path / "out"), max_steps=3, per_device_train_batch_size=2, logging_steps=1,
                     learning_rate=1e-3, report_to="none", save_strategy="no", use_cpu=True, bf16=False,
                     gradient_checkpointing=False)
    trainer = DPOTrainer(model=model, args=args, train_dataset=dataset,
                         processing_class=AutoTokenizer.from_pretrained(tiny_model_dir))
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert trainer.state.global_step == 3 and len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
