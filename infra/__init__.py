"""llm-fleet: size and provision self-hosted LLM serving on AWS from SLOs.

Nothing here creates a cloud resource at import time; the Pulumi program is `__main__.py`
at the repository root.
"""
