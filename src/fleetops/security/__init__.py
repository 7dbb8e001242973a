"""Cyber defence of the fleet's vehicles: in-vehicle intrusion detection (:mod:`.ids`)."""
