"""Every config section and field documents itself (docs/program.md's reference is generated
from these descriptions by `python -m infra docs --write`)."""
from __future__ import annotations

from pydantic import BaseModel

from infra.core.config import STACK_SECTIONS, StackConfig


def test_every_section_and_field_has_a_description():
    for section in STACK_SECTIONS:
        field = StackConfig.model_fields[section]
        assert field.description, section
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            for name, sub in ann.model_fields.items():
                assert sub.description, f"{section}.{name}"
