"""Internal wallet service: a double-entry ledger of virtual credits."""
