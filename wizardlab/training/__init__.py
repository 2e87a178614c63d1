"""Supervised fine-tuning (SFT) on exported Evol-Instruct data: settings, data, base models, jobs.

- `config`: `TrainConfig`, presets, DeepSpeed config, launcher argv (command preview).
- `data`: the prompt template, loss masking on the prompt, padding collator.
- `base_models`: tiny-llama (built offline), the embedded Gemma 3 270M, local dirs, hub ids.
- `launch`: runs as detached jobs (launch, stop, resume, delete) and their progress files.

The training loop itself is `pipeline/train_sft.py` (a standalone script run by
`python`, `torchrun` or `deepspeed`). No Gradio here.
"""

from wizardlab.training.base_models import resolve_model, tiny_llama_dir
from wizardlab.training.config import (PRESETS, Hardware, TrainConfig, build_argv, deepspeed_config,
                                       detect_hardware, make_config, preview, resolve_precision)
from wizardlab.training.data import IGNORE_INDEX, SFTCollator, encode_example, format_prompt, load_examples
from wizardlab.training.launch import (delete_training, latest_checkpoint, launch_training, read_progress,
                                       resume_training, run_view, stop_training)

__all__ = [
    "PRESETS", "Hardware", "TrainConfig", "build_argv", "deepspeed_config", "detect_hardware", "make_config",
    "preview", "resolve_precision", "IGNORE_INDEX", "SFTCollator", "encode_example", "format_prompt",
    "load_examples", "resolve_model", "tiny_llama_dir", "delete_training", "latest_checkpoint",
    "launch_training", "read_progress", "resume_training", "run_view", "stop_training",
]
