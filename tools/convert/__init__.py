"""Model conversion toolchain for kycedge (runs in .venv-convert only, never at run time).

Entry point: tools/convert_models.py (or tools/convert_models.sh, which also creates the venv).
"""
