"""Errors a researcher can act on: each message says what is wrong and what to do."""


class WeightlabError(Exception):
    """Base class: the message is shown to the user as is, without a traceback."""


class DataNotFoundError(WeightlabError):
    """A data set or model file is not where the configuration says."""


class InputError(WeightlabError):
    """An input file exists but its content is not what the step expects."""


class OutputError(WeightlabError):
    """An output cannot be written: no space left, no permission, a read-only file system."""
