"""Research runs beside the product: distillation, the choice of ensemble members, and
post-processing variants. They build on the ``classifier`` library; nothing in the
product imports them. Run from the repository root: ``python -m experiments.<name>``."""
