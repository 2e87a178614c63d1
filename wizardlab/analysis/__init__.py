"""Analysis of an evolution run's data, one module per question:

- `tables`: counts per round / operation / rule, elimination rates, lengths (SQL in the store);
- `difficulty`: the LLM's 1-10 difficulty rating of each instruction (its prompt is
  `templates/difficulty.txt`);
- `embeddings`: all-MiniLM-L6-v2 vectors, cached in the store per text and model;
- `diversity`: UMAP maps, dispersion, reference sets.

No Gradio here (the Data tab is `eval_ui.data`) and no command lines (`pipeline.score`,
`pipeline.embed`).
"""
