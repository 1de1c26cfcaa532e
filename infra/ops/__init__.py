"""Operations: effectful work on a stack's cloud (weights transfer, the rollout runner and its
state stores, preflight checks). Imports the core only; the command layer wires it to the
program and the policies."""
