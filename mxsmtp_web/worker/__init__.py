"""The queue's other end: claim messages stored with only their header block and complete
them (parse, sanitise, index, conversation facts). `complete` is the work, `run` the loop of
an `mxsmtp worker` process."""
