"""Analysis data: difficulty scores, embeddings cache, reference sets."""


class AnalysisQueries:
    pass
