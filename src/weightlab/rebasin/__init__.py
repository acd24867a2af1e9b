"""Study 1: Git Re-Basin under spurious features (shared/sources/000_*.txt).

Modules by stage: `design` (model names, pairs, seeds: torch-free, read while the workflow
parses), `spurious` (coloured-patch environments, the Spurious Reliance Score), `environments`
(which images each model trains and is evaluated on), `paths` (weight matching, interpolation),
`barriers` (barriers per pair, barriers.json), `report` (summary and the hypothesis check),
`figures`.
"""
