"""The cmsgen engine: sources, layouts, reports, features, models, training and validation.

The engine is a plain library. It never imports textual, rich, typer or plotext,
so that it can run in batch jobs and be tested without a terminal.
"""

from cmsgen.engine.errors import CmsgenError

__all__ = ["CmsgenError"]
