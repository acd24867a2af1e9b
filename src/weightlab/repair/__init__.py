"""Study 2: provable repair of an AlexNet by linear programming (shared/sources/001_*.txt).

Modules by stage: `editsets` (which test images a repair must fix, and the experiment names:
numpy only, read while the workflow parses), `lp` (the repair LP of one layer), `solvers`
(gurobipy and HiGHS, and the choice between them), `core` (repair a model, apply and check the
change), `experiment` (the base model, one run per edit set, the grid), `figures`.
"""
