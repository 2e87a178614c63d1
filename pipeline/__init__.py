"""The verbs of WizardLab: stages that turn stored data into stored data.

Each stage module defines `HELP`, `add_arguments(parser)` and `main(args) -> int`, and
is runnable as `python -m pipeline <stage>`; the UI calls the same library functions.
"""

# stage name -> (module, one-line help). Modules are imported only when their stage runs,
# so `python -m pipeline --help` stays fast.
STAGES: dict[str, tuple[str, str]] = {
    "evolve": ("pipeline.evolve", "Evolve seed instructions round by round (Evol-Instruct) into the store."),
    "export": ("pipeline.export", "Export the instruction forest: lineage JSONL, Alpaca, ShareGPT or a HF dataset."),
    "recipe": ("pipeline.recipe", "Data recipes: named filters over the forest that yield a training set; export and compare them."),
    "runs": ("pipeline.runs", "List runs and jobs in the store, or cancel one."),
    "score": ("pipeline.score", "Score instruction difficulty (1-10) with the LLM, as in the WizardLM paper."),
    "embed": ("pipeline.embed", "Embed instructions (all-MiniLM-L6-v2), project with UMAP, report diversity."),
    "override": ("pipeline.override", "Restore or eliminate nodes by hand, audited; or undo an override."),
    "users": ("pipeline.users", "Manage accounts: add, disable, list users, change roles and set passwords."),
    "train": ("pipeline.train", "Fine-tune a base model on an exported data set (SFT, DeepSpeed optional)."),
    "generate": ("pipeline.generate", "Generate an output set for a test set with a checkpoint or an endpoint."),
    "import-outputs": ("pipeline.import_outputs", "Import model outputs (JSONL/CSV, Vicuna answer files) as an output set."),
    "campaign": ("pipeline.campaign", "Create and inspect blind pairwise judging campaigns."),
    "judge": ("pipeline.judge", "Run the LLM judge (pairwise verdicts or Vicuna-style 1-10 scores) on a campaign, in both orders."),
    "import-judgments": ("pipeline.import_judgments", "Import external human judgments (PandaLM, llmfao, open-instruct, CSV)."),
    "agreement": ("pipeline.agreement", "Inter-annotator agreement of a judgments CSV: percent, Cohen, Fleiss, Krippendorff."),
    "experiment": ("pipeline.experiment", "Experiments: arms (recipe + base model + preset) trained, generated and judged blind; their report."),
    "tour": ("pipeline.tour", "The first-run tour: evolve, recipes, a two-arm experiment and a campaign on the embedded model."),
    "report": ("pipeline.report", "Win rates (per item and per judgment), capacity ratios, ratings and agreement for a campaign."),
    "review": ("pipeline.review", "Review tasks: curators check eliminations; agreement and per-rule precision; apply as overrides."),
    "model-server": ("pipeline.model_server", "List, start or stop the background servers that keep a local model loaded between commands."),
    "backup": ("pipeline.backup", "Back up the database consistently while the app runs (SQLite online backup)."),
    "restore": ("pipeline.restore", "Restore the database from a backup (checked: a WizardLab file, not a newer schema)."),
}
