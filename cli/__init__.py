"""The `pgmove` command: composition of config, store, queue, handlers and workers happens here."""
