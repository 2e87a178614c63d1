"""Blind pairwise evaluation, one module per step of the work:

- `testsets` reads test-set and output files; `outputs` stores them (`import_testset`,
  `import_outputs`); `formats` reads external judgment files and `external` imports them;
- `generate`: an output set answered by any LLM backend (a job);
- `campaigns`: pairs of output sets over their common prompts, k annotators per item;
- `annotate`: the annotator's loop (`next_item` / `submit` / `skip` / `undo`), blind; gold
  items pause careless raters; `raters`: one card per rater; `identity`: leaks before blinding;
- `judge`: the pairwise LLM judge, asked in both orders;
- `stats` (agreement, win rates, Bradley-Terry, on sklearn / statsmodels / krippendorff /
  scipy) and `report` (a campaign's figures).

The names most callers need are re-exported here.
"""

from wizardlab.evaluation.annotate import (MAX_RATIONALE, a_on_left, annotator_campaigns, is_paused, next_item, skip,
                                           submit, undo)
from wizardlab.evaluation.campaigns import (ATTENTION_MODEL, CRITERIA, DEFAULT_GUIDELINES, assign_annotators,
                                            create_campaign, require_campaign, resolve_identity, set_rater,
                                            set_status)
from wizardlab.evaluation.outputs import import_outputs, import_outputs_files, import_testset

__all__ = ["ATTENTION_MODEL", "MAX_RATIONALE", "CRITERIA", "DEFAULT_GUIDELINES", "a_on_left", "annotator_campaigns",
           "assign_annotators", "create_campaign", "import_outputs", "import_outputs_files", "import_testset", "is_paused", "next_item",
           "require_campaign", "resolve_identity", "set_rater", "set_status", "skip", "submit", "undo"]
