"""The consent API: external sites record opt-ins and opt-outs; auditors read a person's history."""
