"""The model card is written from the gates' own files: metrics with intervals, data, stages."""
import json

from agents import model_card
from factory.project import Project


def test_card_reports_the_verdict_data_and_stages(tmp_path):
    (tmp_path / "training-config.json").write_text("{}")
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    (metrics / "verdict.json").write_text(json.dumps({
        "passed": True, "reason": "exact_match 0 → 0.83 beats the base model.",
        "primary_metric": "exact_match", "confidence": 0.95,
        "metrics": {"exact_match": {"baseline": 0.0, "candidate": 0.83, "improvement": 0.83,
                                    "ci_low": 0.73, "ci_high": 0.92, "n": 59},
                    "tool_name": {"n": 0}}}))
    (metrics / "data-report.json").write_text(json.dumps({
        "valid": 600, "records": 600, "frozen_eval": 59, "splits": {"train": 480, "val": 61},
        "files": [{"file": "data/raw/demo.jsonl", "format": "messages", "valid": 600}]}))
    (metrics / "training-stats.json").write_text(json.dumps({
        "method": "sft+dpo", "backend": "transformers",
        "stages": [{"method": "sft", "total_steps": 30, "final_loss": 0.1, "eval_loss": 0.2},
                   {"method": "dpo", "total_steps": 4, "final_loss": 0.6, "eval_loss": None}]}))
    out = tmp_path / "models" / "deployed" / "v1-abc"
    out.mkdir(parents=True)
    promotion = {"id": "v1-abc", "checkpoint_hash": "abc123",
                 "outputs": {"adapter": "x", "merged": "y"}}
    card = model_card.write(Project(tmp_path), out, promotion, "Qwen/Qwen2.5-0.5B-Instruct")
    text = card.read_text()
    front, _, rest = text.removeprefix("---\n").partition("\n---\n")
    assert 'base_model: "Qwen/Qwen2.5-0.5B-Instruct"' in front and "  - dpo" in front
    assert "| exact_match (primary) | 0 | 0.83 | +0.83 | [+0.73, +0.92] | 59 |" in rest
    assert "tool_name" not in rest, "a metric with no applicable examples is not shown"
    assert "| 2 | dpo | 4 | 0.6 | - |" in rest
    assert "`data/raw/demo.jsonl` (messages): 600 valid" in rest
    assert "Verdict: **PASSED**" in rest and 'from_pretrained("merged")' in rest
