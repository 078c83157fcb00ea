"""The .aio capture format: framing, columns, writer, reader (see format/SPEC.md)."""
