"""Library of the offline tools: everything the CLI does, without the CLI (imports one way:
cli -> ops -> format)."""
