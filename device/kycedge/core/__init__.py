"""The floor every wing stands on: one error tree, typed config sections, the durable
file write, log set-up and the command-line dispatcher. Imports the standard library only."""
