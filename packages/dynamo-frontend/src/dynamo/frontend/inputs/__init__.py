"""The non-HTTP inputs of `dynamo-run`: interactive text, stdin, and batch files."""


class InputError(Exception):
    """An input cannot run (unreadable file, empty stdin): one line, exit code 1.

    Defined here, not beside the inputs, so that the CLI can catch it without importing the chat
    pipeline (and the OpenAI request models) into processes that run no input, such as workers.
    """
