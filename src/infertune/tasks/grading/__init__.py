"""How tasks judge completions: answer extraction and equivalence, and the sandbox that runs model-written code.

This is reward machinery that tasks own; verifiers (``infertune.verify``) consume tasks and never the other way
round. Nothing here imports a task.
"""
