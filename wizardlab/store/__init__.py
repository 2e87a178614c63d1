"""`Store`: the one object that reads and writes the WizardLab database.

Query methods are grouped by domain in mixins (runs, evolution, users, evaluation, review);
`wizardlab.store.base` holds connections, migrations and the batch writer.
"""

from wizardlab.store.base import BatchWriter, StoreBase, now_iso
from wizardlab.store.analysis import AnalysisQueries
from wizardlab.store.evaluation import EvalQueries
from wizardlab.store.evol import EvolQueries
from wizardlab.store.experiments import ExperimentQueries
from wizardlab.store.lineage import LineageQueries
from wizardlab.store.review import ReviewQueries
from wizardlab.store.runs import RunQueries
from wizardlab.store.users import UserQueries


class Store(StoreBase, RunQueries, EvolQueries, LineageQueries, AnalysisQueries, UserQueries, EvalQueries,
            ExperimentQueries, ReviewQueries):
    """Open (and migrate) the database at `path`."""


__all__ = ["Store", "BatchWriter", "now_iso"]
