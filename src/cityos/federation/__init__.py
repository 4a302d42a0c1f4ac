"""The federated digital gateway: agencies train and infer together while raw data stays
with its owner (DESIGN.md, ``federation/``).

Algorithms are party roles over one :class:`~cityos.federation._channel.Channel`
(``cityos.testing.federation.LocalFederation`` in process, the gateway over mutual TLS):
:mod:`~cityos.federation.psi` (ECDH entity alignment), :mod:`~cityos.federation.secureboost`
(lossless vertical boosting on :mod:`~cityos.federation.paillier`),
:mod:`~cityos.federation.vlr` (vertical logistic regression),
:mod:`~cityos.federation.horizontal` (Flower), :mod:`~cityos.federation.shapley`
(contributions). Payloads cross only through :mod:`~cityos.federation._codec`.
Submodules are imported on use, so importing this package stays cheap.
"""
