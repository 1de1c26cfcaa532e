"""Pure sizing library: memory, step-time model, closed form, the vLLM fleet simulator, SLO search.

Imports neither pulumi nor boto3 (tests enforce it).
"""

from infra.core.sizing.search import size  # noqa: E402  (the library's entry point)

__all__ = ["size"]
