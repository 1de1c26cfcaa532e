"""Pure sizing library: memory, step-time model, latency under load, SLO search.

Imports neither pulumi nor boto3 (tests enforce it).
"""
