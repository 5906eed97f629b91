"""Rewards and verifier scores: answer extraction, math equivalence, the code sandbox and batch verifiers."""
