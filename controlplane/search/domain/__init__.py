"""Pure decisions of jobs search: no I/O library is imported below this package.

``query``     the search query: one value, its syntax, its budget; ``grammar`` parses it, ``cursors`` pages it
``analysis``  how text becomes terms, identically on Elasticsearch and PostgreSQL
``documents`` job rows and job-sync messages -> index actions; bulk item outcomes
``mapping``   the index template (settings, analyzer, explicit mappings)
``requests``  a parsed query -> an Elasticsearch request body, and its answer back
``results``   the backend-independent result shape
``breaker``   the circuit breaker in front of Elasticsearch
``drift``     comparing per-bucket statistics of the two stores
"""
