"""One agent module per gate: baseline, format, finetune, evaluate, deploy."""
