"""The ``watch`` benchmark: 1,000 idle blocking reads on one API instance, and how soon a change reaches its watcher."""
