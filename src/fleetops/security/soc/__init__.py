"""The cyber defence centre: OCSF events from IT, vehicles, OT and digital services, Sigma
rules, behavioural anomaly models and cross-layer correlation into incidents."""
