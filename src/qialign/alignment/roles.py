"""The two staff roles whose priorities alignment compares: the keys of ``alignment.roles`` in the
trial config and the roles of the survey contract (each raw staff group maps to one of them)."""

ROLES = ("clinical", "managerial")
