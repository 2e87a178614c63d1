"""WizardLab: a workbench for Evol-Instruct data, fine-tuning and blind pairwise evaluation.

The library holds the nouns (store, LLM backends, evolution logic, statistics, jobs);
`pipeline/` holds the verbs and `eval_ui/` the Gradio faces. Nothing here imports Gradio.
"""

__version__ = "0.1.0"
