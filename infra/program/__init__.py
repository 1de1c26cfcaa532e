"""The Pulumi programs: components (`components/`, `serving/`), the compositions the two
projects' `__main__.py` call (`compose.base`, `workloads.workloads`), and the offline runtime that
runs them under mocks (`offline/`). Imports the core, never operations or commands."""
