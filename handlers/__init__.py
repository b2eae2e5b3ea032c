"""One function per /pgmove verb: text -> typed command -> authorize -> transition -> enqueue -> reply."""
