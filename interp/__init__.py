"""interp: a mechanistic-interpretability workbench for induction heads.

Data flow: models -> sequences / tasks -> hooks -> scores -> tables -> figures / report.
Submodules are imported on demand (``from interp.models.loading import load_model``) so that
importing ``interp`` stays cheap.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
