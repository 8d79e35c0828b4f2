"""``ref+...`` references: the grammar (``grammar``) and their resolution at render time (``resolve``)."""
