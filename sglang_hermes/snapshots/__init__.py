"""A stream's compressed memory as a file: what survives a restart, a crash of the process, or a move
to another worker. Engine-free: the runtime fills and consumes the tensors, the API names the files."""
