"""The Pulumi program: components (`components/`, `serving/`), the composition `__main__.py`
calls (`compose`), and the offline runtime that runs it under mocks (`offline/`). Imports the
core, never operations or commands."""
