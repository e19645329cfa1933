"""The report's sections, in the order they appear; each is `section(doc, inputs)`."""

from ramlab.report.sections.cost import cost_section
from ramlab.report.sections.errors import errors_section
from ramlab.report.sections.glimpses import glimpses_section
from ramlab.report.sections.provenance import provenance_section
from ramlab.report.sections.rewards import rewards_section
from ramlab.report.sections.robustness import robustness_section

SECTIONS = (
    errors_section,
    cost_section,
    robustness_section,
    rewards_section,
    glimpses_section,
    provenance_section,
)

__all__ = ["SECTIONS"]
