"""The non-HTTP inputs of `dynamo-run`: interactive text, stdin, and batch files."""
