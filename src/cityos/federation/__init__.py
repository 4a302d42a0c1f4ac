"""The federated digital gateway: agencies train and infer together while raw data stays
with its owner (DESIGN.md, ``federation/``)."""
