"""Domain operations: the SQL and the business rules. No Flask imports here."""
