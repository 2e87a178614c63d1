"""Evaluation data: prompts, output sets, campaigns, assignments and judgments."""


class EvalQueries:
    pass
