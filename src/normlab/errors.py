"""Errors whose message says all the user needs: the CLI prints them as one line, no traceback."""


class NormlabError(Exception):
    """A problem with the user's input or environment (bad config value, missing data)."""


class DataNotFoundError(NormlabError):
    """A data set is neither under `data.root` nor downloadable."""
