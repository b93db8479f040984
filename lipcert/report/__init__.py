"""Everything lipcert shows or writes: tables on the terminal (console, the only module that imports
rich), JSON documents, CSV tables, figures, atomic file writes, and the JSON Schema of a certificate.

Nothing here computes a bound: reports take finished results (lipcert.result, lipcert.batch,
lipcert.pairs, lipcert.radius) and format them.
"""
